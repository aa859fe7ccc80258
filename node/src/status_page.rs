//! The live status page served at `/` on the metrics port: one static HTML page, its script
//! and style sheet, compiled into the binary. The page reads everything from this node's
//! JSON-RPC over WebSocket (no indexer); the server only fills in where the RPC listens.

use std::net::SocketAddr;

const INDEX_HTML: &str = include_str!("status_page/index.html");
const STATUS_JS: &str = include_str!("status_page/status.js");
const STATUS_CSS: &str = include_str!("status_page/status.css");

/// The page may run only its own script and style and talk only over WebSocket (to the
/// RPC port); nothing else loads, and it may not be framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src ws: wss:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The page's files, with the RPC address filled in.
#[derive(Debug, Clone)]
pub struct StatusPage {
    index: String,
}

/// One file of the page: its content type and body.
#[derive(Debug)]
pub struct Asset {
    pub content_type: &'static str,
    pub body: String,
}

impl StatusPage {
    /// `rpc`: where the node's JSON-RPC listens. An unspecified address (0.0.0.0, ::) is
    /// reached on whatever host the browser loaded the page from.
    pub fn new(rpc: SocketAddr) -> StatusPage {
        let target = if rpc.ip().is_unspecified() {
            format!(":{}", rpc.port())
        } else {
            rpc.to_string()
        };
        StatusPage {
            index: INDEX_HTML.replace("{{RPC}}", &target),
        }
    }

    pub fn asset(&self, path: &str) -> Option<Asset> {
        let (content_type, body) = match path {
            "/" | "/index.html" => ("text/html; charset=utf-8", self.index.clone()),
            "/status.js" => ("text/javascript; charset=utf-8", STATUS_JS.to_string()),
            "/status.css" => ("text/css; charset=utf-8", STATUS_CSS.to_string()),
            _ => return None,
        };
        Some(Asset { content_type, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_the_rpc_address_and_loads_only_its_own_files() {
        let page = StatusPage::new("127.0.0.1:8545".parse().expect("address"));
        let index = page.asset("/").expect("asset");
        assert!(index.content_type.starts_with("text/html"));
        assert!(index
            .body
            .contains(r#"<meta name="keel-rpc" content="127.0.0.1:8545">"#));
        assert!(index.body.contains(r#"src="/status.js""#));
        let any = StatusPage::new("0.0.0.0:9000".parse().expect("address"));
        assert!(any
            .asset("/")
            .expect("asset")
            .body
            .contains(r#"content=":9000""#));
        assert!(page
            .asset("/status.js")
            .expect("asset")
            .content_type
            .contains("javascript"));
        assert!(page
            .asset("/status.css")
            .expect("asset")
            .content_type
            .contains("css"));
        assert!(page.asset("/secret").is_none());
        // Node data reaches the page as text only.
        assert!(!STATUS_JS.contains("innerHTML"));
    }
}

//! The live status page served at `/` on the metrics port: one static HTML page, its script
//! and style sheet, compiled into the binary. The page reads everything from this node's
//! JSON-RPC over WebSocket (no indexer); the server only fills in where the RPC listens.

use std::net::SocketAddr;

const INDEX_HTML: &str = include_str!("status_page/index.html");
const STATUS_JS: &str = include_str!("status_page/status.js");
const STATUS_CSS: &str = include_str!("status_page/status.css");

/// The page may run only its own script and style and talk only over WebSocket to the RPC
/// port; nothing else loads, and it may not be framed. `{connect}` is the RPC's WebSocket
/// origin (any host's when the RPC listens on every address).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src {connect}; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The page's files, with the RPC address filled in.
#[derive(Debug, Clone)]
pub struct StatusPage {
    index: String,
    csp: String,
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
        let connect = if rpc.ip().is_unspecified() {
            "ws: wss:".to_string()
        } else {
            format!("ws://{rpc} wss://{rpc}")
        };
        StatusPage {
            index: INDEX_HTML.replace("{{RPC}}", &target),
            csp: CONTENT_SECURITY_POLICY.replace("{connect}", &connect),
        }
    }

    /// The `Content-Security-Policy` header the page's files are served with.
    pub fn content_security_policy(&self) -> &str {
        &self.csp
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
        assert!(page
            .content_security_policy()
            .contains("connect-src ws://127.0.0.1:8545 wss://127.0.0.1:8545;"));
        assert!(any
            .content_security_policy()
            .contains("connect-src ws: wss:;"));
        // Node data reaches the page as text only: no HTML sinks, no attributes that run
        // or load anything.
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!STATUS_JS.contains(sink), "status.js uses {sink}");
        }
    }
}

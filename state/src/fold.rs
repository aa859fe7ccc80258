//! Reading fold pages through any view: which pages flag a key absent from the tree.
//! keel_types::fold says what a page is; docs/expiry.md argues why this keeps "never a zero".

use crate::error::StateError;
use crate::overlay::StateView;
use keel_types::fold::{FoldPage, KeyProbes};
use keel_types::{Canonical, StateKey};

/// Fold pages in `view` (pages are numbered `0..count`).
pub fn fold_count<V: StateView + ?Sized>(view: &V) -> Result<u64, StateError> {
    Ok(match view.entry(&StateKey::FoldCount)? {
        Some(crate::Entry::Live { value, .. }) => u64::from_be_bytes(
            value
                .as_slice()
                .try_into()
                .map_err(|_| StateError::Corrupt("fold count".into()))?,
        ),
        _ => 0,
    })
}

/// Fold page `index` of `view`.
pub fn fold_page<V: StateView + ?Sized>(
    view: &V,
    index: u64,
) -> Result<Option<FoldPage>, StateError> {
    match view.entry(&StateKey::FoldPage(index))? {
        Some(crate::Entry::Live { value, .. }) => FoldPage::decode(&value)
            .map(Some)
            .map_err(StateError::decode("fold page")),
        _ => Ok(None),
    }
}

/// Every page of `view` whose filter flags `key`, oldest first, with its index.
pub fn flagging_pages<V: StateView + ?Sized>(
    view: &V,
    key: &StateKey,
) -> Result<Vec<(u64, FoldPage)>, StateError> {
    let count = fold_count(view)?;
    if count == 0 || !key.expires() {
        return Ok(Vec::new());
    }
    let probes = KeyProbes::new(&key.key_hash());
    let mut out = Vec::new();
    for index in 0..count {
        let page = fold_page(view, index)?
            .ok_or_else(|| StateError::Corrupt(format!("fold page {index} is missing")))?;
        if page.flags_probes(index, &probes) {
            out.push((index, page));
        }
    }
    Ok(out)
}

/// The typed error for reading `key`, absent from the tree, if a fold page flags it: the
/// entry may be archived, so it is not a zero (epoch: the newest flagging page's).
pub fn folded_error(pages: &[(u64, FoldPage)], key: &StateKey) -> Option<StateError> {
    // Most chains have no page yet: no key hash for every absent read then.
    if pages.is_empty() {
        return None;
    }
    let probes = KeyProbes::new(&key.key_hash());
    pages
        .iter()
        .rev()
        .find(|(index, page)| page.flags_probes(*index, &probes))
        .map(|(_, page)| StateError::Expired {
            key: key.clone(),
            epoch: page.newest_epoch,
            leaf: None,
        })
}

/// All pages of `view`, for callers that probe many keys (an overlay caches them per block).
pub fn all_pages<V: StateView + ?Sized>(view: &V) -> Result<Vec<(u64, FoldPage)>, StateError> {
    (0..fold_count(view)?)
        .map(|index| {
            fold_page(view, index)?
                .map(|page| (index, page))
                .ok_or_else(|| StateError::Corrupt(format!("fold page {index} is missing")))
        })
        .collect()
}

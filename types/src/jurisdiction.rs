//! Jurisdiction tags and rules (docs/policies.md, "Jurisdiction rules"): genesis attesters tag
//! accounts with ISO 3166-1 alpha-2 codes that expire at a height, and any account or contract
//! declares rules on who may call it — "callers tagged X may not call me", "only callers
//! tagged with one of {…}", "untagged callers send at most V per call".
//!
//! Tags and rules live in the storage of one system contract, [`JURISDICTION_ADDRESS`], a
//! precompile both environments call. Its storage never expires (`StateKey::expires`): an
//! expired rule must not read as no rule. Keeping them in the EVM journal — rather than in
//! entries of their own — is what lets a contract of either environment declare its rules
//! from inside a transaction, and lets a revert undo a change with the frame that made it.
//!
//! Storage layout (fixed slots, no hashing; the layout is part of the state and of the root):
//! `[kind, address (20 bytes), 0 × 10, index]`, kind [`TAGS_KIND`] or [`RULES_KIND`], plus one
//! counter slot [`RULED_COUNT_SLOT`].

use crate::address::Address;
use crate::{Height, U256};

/// The jurisdiction system contract (a precompile in both environments).
pub const JURISDICTION_ADDRESS: Address = Address([
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x90, 0x13,
]);

/// Most tags one account may carry (one per attester and code).
pub const MAX_TAGS_PER_ACCOUNT: usize = 8;
/// Most codes in one rule list: 16 two-byte codes fill one 32-byte slot.
pub const MAX_RULE_CODES: usize = 16;
/// Most attesters a genesis may list.
pub const MAX_ATTESTERS: usize = 64;

/// Slot kind of an account's tags: index 0 holds the count, 1..=8 one packed [`Tag`] each.
pub const TAGS_KIND: u8 = 1;
/// Slot kind of an address's rules: index 0 a header whose first byte flags which parts
/// exist ([`DENY_FLAG`], [`ALLOW_FLAG`], [`CAP_FLAG`]; zero: no rules, so a frame into an
/// address without rules reads one slot), 1 the denied codes, 2 the allowed codes, 3 the
/// untagged value cap.
pub const RULES_KIND: u8 = 2;
/// Slot kind of the policy plugins an address attaches to the calls it receives: index 0
/// the count, 1..=`MAX_POLICY_PLUGINS` one address each (left-aligned).
pub const PLUGINS_KIND: u8 = 3;
pub const DENY_FLAG: u8 = 1;
pub const ALLOW_FLAG: u8 = 2;
pub const CAP_FLAG: u8 = 4;
/// How many addresses declare rules or attach plugins (u64, big-endian in the last 8 bytes):
/// while it is zero, no call frame or transaction needs to look further (the common case
/// costs one cached read).
pub const RULED_COUNT_SLOT: [u8; 32] = {
    let mut s = [0u8; 32];
    s[0] = 0xff;
    s
};

/// The slot `index` of `kind` for `address`.
pub fn slot(kind: u8, address: &Address, index: u8) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[0] = kind;
    s[1..21].copy_from_slice(&address.0);
    s[31] = index;
    s
}

/// Every officially assigned ISO 3166-1 alpha-2 code (249), sorted.
const ISO_3166_ALPHA2: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ \
BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ \
EC EE EG EH ER ES ET FI FJ FK FM FO FR \
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU \
ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ \
LA LB LC LI LK LR LS LT LU LV LY \
MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ \
NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA \
RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ \
TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU \
WF WS YE YT ZA ZM ZW";

/// An ISO 3166-1 alpha-2 code, two upper-case ASCII letters that the standard assigns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Code(pub [u8; 2]);

impl Code {
    /// The code, if `bytes` is an assigned ISO 3166-1 alpha-2 code.
    pub fn new(bytes: [u8; 2]) -> Option<Code> {
        // The list is sorted, each code 2 letters and a space: a binary search over it (every
        // rule word read in a call frame decodes its codes through here).
        let list = ISO_3166_ALPHA2.as_bytes();
        let count = list.len().div_ceil(3);
        let (mut lo, mut hi) = (0, count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match list[3 * mid..3 * mid + 2].cmp(bytes.as_slice()) {
                std::cmp::Ordering::Equal => return Some(Code(bytes)),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        None
    }

    pub fn parse(text: &str) -> Option<Code> {
        let bytes: [u8; 2] = text.as_bytes().try_into().ok()?;
        Code::new(bytes)
    }

    pub fn as_str(&self) -> &str {
        // Checked ASCII at construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attester's tag on an account: live while the height is below `expires_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub code: Code,
    pub expires_at: Height,
    pub attester: Address,
}

impl Tag {
    pub fn live_at(&self, height: Height) -> bool {
        height < self.expires_at
    }

    /// `code ‖ expires_at (8, BE) ‖ attester (20) ‖ 0 0`.
    pub fn to_slot(&self) -> [u8; 32] {
        let mut s = [0u8; 32];
        s[0..2].copy_from_slice(&self.code.0);
        s[2..10].copy_from_slice(&self.expires_at.to_be_bytes());
        s[10..30].copy_from_slice(&self.attester.0);
        s
    }

    /// `None` for a slot no tag was written to (or that is not one).
    pub fn from_slot(s: &[u8; 32]) -> Option<Tag> {
        let code = Code::new([s[0], s[1]])?;
        let mut height = [0u8; 8];
        height.copy_from_slice(&s[2..10]);
        let mut attester = [0u8; 20];
        attester.copy_from_slice(&s[10..30]);
        Some(Tag {
            code,
            expires_at: u64::from_be_bytes(height),
            attester: Address(attester),
        })
    }
}

/// What an address declares about its callers. The default declares nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rules {
    /// Callers holding a live tag with any of these codes may not call.
    pub deny: Vec<Code>,
    /// Non-empty: only callers holding a live tag with one of these codes may call.
    pub allow_only: Vec<Code>,
    /// Callers holding no live tag send at most this much value per call.
    pub untagged_max_value: Option<U256>,
}

impl Rules {
    pub fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.allow_only.is_empty() && self.untagged_max_value.is_none()
    }

    /// The header's flags: which parts exist (zero: none).
    pub fn flags(&self) -> u8 {
        let mut flags = 0;
        if !self.deny.is_empty() {
            flags |= DENY_FLAG;
        }
        if !self.allow_only.is_empty() {
            flags |= ALLOW_FLAG;
        }
        if self.untagged_max_value.is_some() {
            flags |= CAP_FLAG;
        }
        flags
    }

    /// The four storage words: header, denied codes, allowed codes, cap.
    pub fn to_slots(&self) -> [[u8; 32]; 4] {
        let mut header = [0u8; 32];
        header[0] = self.flags();
        [
            header,
            pack_codes(&self.deny),
            pack_codes(&self.allow_only),
            self.untagged_max_value
                .unwrap_or(U256::ZERO)
                .to_be_bytes::<32>(),
        ]
    }

    /// Decodes the rules from the header's flags, loading only the words they name. Stored
    /// words were written by [`Rules::to_slots`] of checked rules; a word that is not (no
    /// call can write one) reads as no codes.
    pub fn load<E>(flags: u8, mut word: impl FnMut(u8) -> Result<[u8; 32], E>) -> Result<Rules, E> {
        let codes = |w: [u8; 32]| unpack_codes(&w).unwrap_or_default();
        Ok(Rules {
            deny: if flags & DENY_FLAG != 0 {
                codes(word(1)?)
            } else {
                Vec::new()
            },
            allow_only: if flags & ALLOW_FLAG != 0 {
                codes(word(2)?)
            } else {
                Vec::new()
            },
            untagged_max_value: if flags & CAP_FLAG != 0 {
                Some(U256::from_be_bytes(word(3)?))
            } else {
                None
            },
        })
    }
}

/// Codes two bytes each, in order, zero-padded.
pub fn pack_codes(codes: &[Code]) -> [u8; 32] {
    let mut s = [0u8; 32];
    for (i, c) in codes.iter().take(MAX_RULE_CODES).enumerate() {
        s[2 * i..2 * i + 2].copy_from_slice(&c.0);
    }
    s
}

/// The codes of a packed word: assigned codes, then only zero bytes, no code twice; `None`
/// for anything else (a hostile caller's `setRules` argument is refused, not trimmed).
pub fn unpack_codes(word: &[u8; 32]) -> Option<Vec<Code>> {
    let mut codes: Vec<Code> = Vec::new();
    let mut ended = false;
    for pair in word.chunks_exact(2) {
        if pair == [0, 0] {
            ended = true;
            continue;
        }
        let code = Code::new([pair[0], pair[1]])?;
        if ended || codes.contains(&code) {
            return None;
        }
        codes.push(code);
    }
    Some(codes)
}

/// Why a call frame is denied by its target's rules, if it is: checks `rules` against the
/// caller's live codes and the value the frame sends.
pub fn judge(rules: &Rules, caller_codes: &[Code], value: U256) -> Option<Verdict> {
    if let Some(code) = rules.deny.iter().find(|c| caller_codes.contains(c)) {
        return Some(Verdict::Denied(*code));
    }
    if !rules.allow_only.is_empty() && !rules.allow_only.iter().any(|c| caller_codes.contains(c)) {
        return Some(Verdict::NotAllowed);
    }
    match rules.untagged_max_value {
        Some(cap) if caller_codes.is_empty() && value > cap => {
            Some(Verdict::UntaggedValue { cap, value })
        }
        _ => None,
    }
}

/// A denial by jurisdiction rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The caller holds this denied code.
    Denied(Code),
    /// The caller holds none of the allowed codes.
    NotAllowed,
    /// An untagged caller sends more than the cap.
    UntaggedValue { cap: U256, value: U256 },
}

impl Verdict {
    /// The policy rule a denial reports (`PolicyDenial.rule`).
    pub fn rule(&self) -> crate::policy::PolicyRule {
        match self {
            Verdict::Denied(_) => crate::policy::PolicyRule::JurisdictionDenied,
            Verdict::NotAllowed => crate::policy::PolicyRule::JurisdictionNotAllowed,
            Verdict::UntaggedValue { .. } => crate::policy::PolicyRule::JurisdictionUntaggedValue,
        }
    }

    /// `(limit, used)` of the denial: the denied code as a number (`used`), or the cap and
    /// the value.
    pub fn numbers(&self) -> (U256, U256) {
        match self {
            Verdict::Denied(code) => (U256::ZERO, U256::from(u16::from_be_bytes(code.0))),
            Verdict::NotAllowed => (U256::ZERO, U256::ZERO),
            Verdict::UntaggedValue { cap, value } => (*cap, *value),
        }
    }
}

/// `tag(address account, bytes2 code, uint64 expiresAt)`: by a genesis attester; replaces its
/// tag with that code, or adds one (expired tags make room first).
pub const TAG: &str = "tag(address,bytes2,uint64)";
/// `untag(address account, bytes2 code)`: the attester's own tag only.
pub const UNTAG: &str = "untag(address,bytes2)";
/// `setRules(bytes32 deny, bytes32 allowOnly, uint256 untaggedMaxValue)`: the caller's own
/// rules; codes packed two bytes each, zero-padded; `type(uint256).max`: no cap. All empty
/// clears them.
pub const SET_RULES: &str = "setRules(bytes32,bytes32,uint256)";
/// `tagCount(address)` → `uint256`: stored tags, live or expired.
pub const TAG_COUNT: &str = "tagCount(address)";
/// `tagAt(address, uint256 index)` → `(bytes2 code, uint64 expiresAt, address attester)`.
pub const TAG_AT: &str = "tagAt(address,uint256)";
/// `hasTag(address, bytes2 code)` → `bool`: a live tag with that code, by any attester.
pub const HAS_TAG: &str = "hasTag(address,bytes2)";
/// `rulesOf(address)` → `(bytes32 deny, bytes32 allowOnly, uint256 untaggedMaxValue)`.
pub const RULES_OF: &str = "rulesOf(address)";
/// `setPlugins(address, address, address, address)`: the policy plugins (zero: none) that
/// check every transaction calling or paying the caller, as a policy's plugins check the
/// account's own transactions (docs/policies.md). All zero detaches them.
pub const SET_PLUGINS: &str = "setPlugins(address,address,address,address)";
/// `pluginsOf(address)` → `(address, address, address, address)`, zero-padded.
pub const PLUGINS_OF: &str = "pluginsOf(address)";
/// `txSessionKey()` → `bytes32`: the session key that signed the transaction, zero if none
/// (the Solidity side of WASM's `tx_session_key`).
pub const TX_SESSION_KEY: &str = "txSessionKey()";
/// `txSessionScope()` → `(bytes32 key, uint64 expiresAt, uint64 epoch, uint256
/// maxValuePerTx, uint256 maxValuePerEpoch, uint256 maxFeePerEpoch, uint256 maxTxsPerEpoch,
/// uint256 valueUsed, uint256 feesUsed, uint256 txsUsed, uint256 targets)`: the scope of the
/// session key that signed the transaction (`policy::SessionScope::abi`), all zero if none
/// (the Solidity side of WASM's `tx_session_scope`).
pub const TX_SESSION_SCOPE: &str = "txSessionScope()";

/// The revert data of a call frame its target's rules deny:
/// `JurisdictionDenied(uint8 rule, address target, address caller, uint256 limit, uint256
/// used)`, rule the `PolicyRule` number.
pub const DENIED_ERROR: &str = "JurisdictionDenied(uint8,address,address,uint256,uint256)";

pub fn selector(signature: &str) -> [u8; 4] {
    let h = crate::eth::keccak256(signature.as_bytes());
    [h[0], h[1], h[2], h[3]]
}

/// Call data of `tag(account, code, expiresAt)`.
pub fn tag_call(account: &Address, code: Code, expires_at: Height) -> Vec<u8> {
    let mut data = selector(TAG).to_vec();
    data.extend_from_slice(&address_word(account));
    data.extend_from_slice(&code_word(code));
    data.extend_from_slice(&U256::from(expires_at).to_be_bytes::<32>());
    data
}

/// Call data of `untag(account, code)`.
pub fn untag_call(account: &Address, code: Code) -> Vec<u8> {
    let mut data = selector(UNTAG).to_vec();
    data.extend_from_slice(&address_word(account));
    data.extend_from_slice(&code_word(code));
    data
}

/// Call data of `setRules(deny, allowOnly, untaggedMaxValue)` for `rules` (empty: clear).
pub fn set_rules_call(rules: &Rules) -> Vec<u8> {
    let mut data = selector(SET_RULES).to_vec();
    data.extend_from_slice(&pack_codes(&rules.deny));
    data.extend_from_slice(&pack_codes(&rules.allow_only));
    data.extend_from_slice(
        &rules
            .untagged_max_value
            .unwrap_or(U256::MAX)
            .to_be_bytes::<32>(),
    );
    data
}

fn address_word(a: &Address) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[12..].copy_from_slice(&a.0);
    w
}

fn code_word(c: Code) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[..2].copy_from_slice(&c.0);
    w
}

/// Topic 0 of the log every tag change emits from [`JURISDICTION_ADDRESS`]:
/// `TagChanged(address account, address attester, bytes2 code, uint64 expiresAt, uint8
/// reason)`, account and attester indexed; reason 1 tagged, 2 untagged.
pub fn tag_changed_topic() -> [u8; 32] {
    crate::eth::keccak256(b"TagChanged(address,address,bytes2,uint64,uint8)")
}

/// Topic 0 of the log every plugin change emits: `PluginsChanged(address account, uint8
/// count)`, account indexed.
pub fn plugins_changed_topic() -> [u8; 32] {
    crate::eth::keccak256(b"PluginsChanged(address,uint8)")
}

/// Topic 0 of the log every rules change emits: `RulesChanged(address account, uint8
/// reason)`, account indexed; reason 1 set, 2 cleared.
pub fn rules_changed_topic() -> [u8; 32] {
    crate::eth::keccak256(b"RulesChanged(address,uint8)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_list_is_iso_3166_alpha2() {
        let codes: Vec<&str> = ISO_3166_ALPHA2.split(' ').collect();
        assert_eq!(codes.len(), 249);
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
        for ok in ["US", "DE", "CH", "SG", "KP", "ZW", "AX"] {
            assert!(Code::parse(ok).is_some(), "{ok}");
        }
        for bad in ["UK", "XX", "us", "U", "USA", "", "EU", "\0\0"] {
            assert!(Code::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn tags_and_rules_round_trip_their_slots() {
        let tag = Tag {
            code: Code(*b"US"),
            expires_at: 77,
            attester: Address([5; 20]),
        };
        assert_eq!(Tag::from_slot(&tag.to_slot()), Some(tag));
        assert_eq!(Tag::from_slot(&[0; 32]), None);
        let rules = Rules {
            deny: vec![Code(*b"KP"), Code(*b"IR")],
            allow_only: vec![],
            untagged_max_value: Some(U256::from(100)),
        };
        let read = |r: &Rules| {
            let words = r.to_slots();
            Rules::load(words[0][0], |i| Ok::<_, ()>(words[usize::from(i)]))
        };
        assert_eq!(read(&rules), Ok(rules));
        assert_eq!(Rules::default().to_slots(), [[0; 32]; 4]);
        assert_eq!(read(&Rules::default()), Ok(Rules::default()));
        let zero_cap = Rules {
            untagged_max_value: Some(U256::ZERO),
            ..Rules::default()
        };
        assert_eq!(read(&zero_cap), Ok(zero_cap));
    }

    #[test]
    fn hostile_code_words_are_refused() {
        let mut word = pack_codes(&[Code(*b"US")]);
        assert_eq!(unpack_codes(&word), Some(vec![Code(*b"US")]));
        word[4..6].copy_from_slice(b"DE"); // after a gap
        assert_eq!(unpack_codes(&word), None);
        let twice = pack_codes(&[Code(*b"US"), Code(*b"US")]);
        assert_eq!(unpack_codes(&twice), None);
        let mut junk = [0u8; 32];
        junk[0..2].copy_from_slice(b"Q1");
        assert_eq!(unpack_codes(&junk), None);
    }

    #[test]
    fn judge_applies_deny_then_allow_then_the_untagged_cap() {
        let us = Code(*b"US");
        let kp = Code(*b"KP");
        let rules = Rules {
            deny: vec![kp],
            allow_only: vec![us],
            untagged_max_value: Some(U256::from(10)),
        };
        assert_eq!(
            judge(&rules, &[us, kp], U256::ZERO),
            Some(Verdict::Denied(kp))
        );
        assert_eq!(judge(&rules, &[us], U256::from(1000)), None);
        assert_eq!(judge(&rules, &[], U256::ZERO), Some(Verdict::NotAllowed));
        let cap_only = Rules {
            untagged_max_value: Some(U256::from(10)),
            ..Rules::default()
        };
        assert_eq!(judge(&cap_only, &[], U256::from(10)), None);
        assert_eq!(
            judge(&cap_only, &[], U256::from(11)),
            Some(Verdict::UntaggedValue {
                cap: U256::from(10),
                value: U256::from(11)
            })
        );
        assert_eq!(judge(&cap_only, &[kp], U256::from(11)), None);
    }
}

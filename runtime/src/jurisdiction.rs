//! Jurisdiction tags and rules at execution (docs/policies.md, "Jurisdiction rules"): the
//! system contract at `JURISDICTION_ADDRESS` that attesters tag accounts through and that any
//! account or contract declares its rules through, and the check every call frame of either
//! environment passes before it runs.
//!
//! The check reads through a slot loader: revm's journal inside a transaction (so a change earlier
//! in the same transaction counts, and a reverted one does not), or a state view at admission
//! and in the policy decision (`policy::evaluate`). Both read the same slots the same way.

use keel_exec_evm::revm::context_interface::{ContextTr, JournalTr};
use keel_exec_evm::revm::interpreter::{Gas, InstructionResult, InterpreterResult};
use keel_exec_evm::revm::primitives::{
    Address as RevmAddress, Bytes, Log, LogData, B256, U256 as RevmU256,
};
use keel_exec_evm::KeelCtx;
use keel_state::{StateError, StateView, StateViewExt};
use keel_types::jurisdiction::{
    judge, pack_codes, rules_changed_topic, slot, tag_changed_topic, unpack_codes, Code, Rules,
    Tag, Verdict, JURISDICTION_ADDRESS, MAX_TAGS_PER_ACCOUNT, RULED_COUNT_SLOT, RULES_KIND,
    TAGS_KIND,
};
use keel_types::{Address, Height, U256};

/// Gas of every call to the contract (a cold account access), plus [`SLOT_READ_GAS`] per
/// slot a read returns from.
pub const JURISDICTION_BASE_GAS: u64 = 2_600;
/// Gas per slot read (a cold `SLOAD`).
pub const SLOT_READ_GAS: u64 = 2_100;
/// Gas of a `tag` or `untag`: up to three slot writes (the tag, the count, a moved tag) at
/// fresh-slot price, and its log. Tags never expire from state, so they pay permanent rates.
pub const TAG_GAS: u64 = 3 * 20_000 + 2_000;
/// Gas of a `setPlugins`: its five slots and the counter at fresh-slot price, and its log.
pub const PLUGINS_GAS: u64 = 6 * 20_000 + 2_000;
/// Gas of a `setRules`: its four slots and the counter at fresh-slot price, and its log.
pub const RULES_GAS: u64 = 5 * 20_000 + 2_000;

use keel_types::jurisdiction::{plugins_changed_topic, PLUGINS_KIND};
pub use keel_types::jurisdiction::{
    selector, DENIED_ERROR, HAS_TAG, PLUGINS_OF, RULES_OF, SET_PLUGINS, SET_RULES, TAG, TAG_AT,
    TAG_COUNT, TX_SESSION_KEY, TX_SESSION_SCOPE, UNTAG,
};
use keel_types::policy::MAX_POLICY_PLUGINS;

/// Reads of the contract's storage through a state view (admission and `evaluate`).
pub fn view_slots(
    view: &dyn StateView,
) -> impl FnMut(&[u8; 32]) -> Result<[u8; 32], StateError> + '_ {
    move |slot| view.storage(&JURISDICTION_ADDRESS, slot)
}

/// Whether any address declares rules (one read): while none does, no transaction can be
/// denied by jurisdiction, and admission skips the policy decision of senders without a
/// policy.
pub fn any_rules(view: &dyn StateView) -> Result<bool, StateError> {
    Ok(word_u64(&view.storage(&JURISDICTION_ADDRESS, &RULED_COUNT_SLOT)?) != 0)
}

fn word_u64(w: &[u8; 32]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&w[24..]);
    // A count no write of ours exceeds; a larger word (none is written) reads as its low bytes.
    u64::from_be_bytes(b)
}

fn u64_word(v: u64) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[24..].copy_from_slice(&v.to_be_bytes());
    w
}

/// The rules `address` declares.
pub fn read_rules<E>(
    load: &mut impl FnMut(&[u8; 32]) -> Result<[u8; 32], E>,
    address: &Address,
) -> Result<Rules, E> {
    let flags = load(&slot(RULES_KIND, address, 0))?[0];
    Rules::load(flags, |i| load(&slot(RULES_KIND, address, i)))
}

/// The plugins `address` attaches to the transactions that call or pay it.
pub fn read_plugins<E>(
    load: &mut impl FnMut(&[u8; 32]) -> Result<[u8; 32], E>,
    address: &Address,
) -> Result<Vec<Address>, E> {
    let count = word_u64(&load(&slot(PLUGINS_KIND, address, 0))?).min(MAX_POLICY_PLUGINS as u64);
    let mut plugins = Vec::with_capacity(count as usize);
    for i in 1..=count as u8 {
        let word = load(&slot(PLUGINS_KIND, address, i))?;
        let mut a = [0u8; 20];
        a.copy_from_slice(&word[..20]);
        plugins.push(Address(a));
    }
    Ok(plugins)
}

/// The plugins of a transaction's target (`to`), if any address attaches some at all.
pub fn target_plugins<E>(
    load: &mut impl FnMut(&[u8; 32]) -> Result<[u8; 32], E>,
    to: &Address,
) -> Result<Vec<Address>, E> {
    if word_u64(&load(&RULED_COUNT_SLOT)?) == 0 {
        return Ok(Vec::new());
    }
    read_plugins(load, to)
}

/// Whether the caller may declare rules or plugins ([`Declarer`]); a contract in its
/// constructor is opted in by asking.
fn may_declare(journal: &mut dyn Journal, call: &Call<'_>) -> Result<bool, String> {
    let opted_in = slot(RULES_KIND, &call.caller, OPTED_IN);
    if call.declarer.created {
        journal.store(&opted_in, u64_word(1))?;
        return Ok(true);
    }
    Ok(call.declarer.codeless || journal.load(&opted_in)? != [0; 32])
}

/// Whether `address` declares rules or attaches plugins (what the counter counts).
fn declares(journal: &mut dyn Journal, address: &Address) -> Result<bool, String> {
    let mut load = |s: &[u8; 32]| journal.load(s);
    Ok(load(&slot(RULES_KIND, address, 0))?[0] != 0
        || word_u64(&load(&slot(PLUGINS_KIND, address, 0))?) != 0)
}

/// Moves the counter by `address`'s change from `before` to now.
fn recount(journal: &mut dyn Journal, address: &Address, before: bool) -> Result<(), String> {
    let after = declares(journal, address)?;
    let count = word_u64(&journal.load(&RULED_COUNT_SLOT)?);
    let count = match (before, after) {
        (false, true) => count.saturating_add(1),
        (true, false) => count.saturating_sub(1),
        _ => return Ok(()),
    };
    journal.store(&RULED_COUNT_SLOT, u64_word(count))
}

/// Every stored tag of `address`, live or expired, in slot order.
pub fn read_tags<E>(
    load: &mut impl FnMut(&[u8; 32]) -> Result<[u8; 32], E>,
    address: &Address,
) -> Result<Vec<Tag>, E> {
    let count = word_u64(&load(&slot(TAGS_KIND, address, 0))?).min(MAX_TAGS_PER_ACCOUNT as u64);
    let mut tags = Vec::with_capacity(count as usize);
    for i in 1..=count as u8 {
        if let Some(tag) = Tag::from_slot(&load(&slot(TAGS_KIND, address, i))?) {
            tags.push(tag);
        }
    }
    Ok(tags)
}

/// The codes `address` holds a live tag for at `height`, each once.
pub fn live_codes<E>(
    load: &mut impl FnMut(&[u8; 32]) -> Result<[u8; 32], E>,
    address: &Address,
    height: Height,
) -> Result<Vec<Code>, E> {
    let mut codes: Vec<Code> = read_tags(load, address)?
        .into_iter()
        .filter(|t| t.live_at(height))
        .map(|t| t.code)
        .collect();
    codes.sort();
    codes.dedup();
    Ok(codes)
}

/// Whether `caller` may call `target` sending `value` at `height`: `None`, or the target's
/// rules and why they deny. One read while no address has rules.
pub fn check_frame<E>(
    load: &mut impl FnMut(&[u8; 32]) -> Result<[u8; 32], E>,
    (target, caller): (&Address, &Address),
    value: U256,
    height: Height,
) -> Result<Option<Verdict>, E> {
    if word_u64(&load(&RULED_COUNT_SLOT)?) == 0 {
        return Ok(None);
    }
    judge_frame(load, (target, caller), value, height)
}

/// [`check_frame`] once the counter is known to be non-zero.
pub fn judge_frame<E>(
    load: &mut impl FnMut(&[u8; 32]) -> Result<[u8; 32], E>,
    (target, caller): (&Address, &Address),
    value: U256,
    height: Height,
) -> Result<Option<Verdict>, E> {
    let rules = read_rules(load, target)?;
    if rules.is_empty() {
        return Ok(None);
    }
    let codes = live_codes(load, caller, height)?;
    Ok(judge(&rules, &codes, value))
}

/// The revert a denied frame ends with: nothing spent, the typed error as its data.
pub fn denied_result(
    verdict: &Verdict,
    (target, caller): (&Address, &Address),
    gas_limit: u64,
) -> InterpreterResult {
    let (limit, used) = verdict.numbers();
    let mut out = Vec::with_capacity(4 + 5 * 32);
    out.extend_from_slice(&selector(DENIED_ERROR));
    out.extend_from_slice(&u64_word(verdict.rule() as u64));
    out.extend_from_slice(&address_word(target));
    out.extend_from_slice(&address_word(caller));
    out.extend_from_slice(&limit.to_be_bytes::<32>());
    out.extend_from_slice(&used.to_be_bytes::<32>());
    InterpreterResult::new(
        InstructionResult::Revert,
        Bytes::from(out),
        Gas::new(gas_limit),
    )
}

fn address_word(a: &Address) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[12..].copy_from_slice(&a.0);
    w
}

fn code_word(c: &Code) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[..2].copy_from_slice(&c.0);
    w
}

/// What the contract can do to the transaction's journal: read and write its slots, log.
pub trait Journal {
    fn load(&mut self, slot: &[u8; 32]) -> Result<[u8; 32], String>;
    fn store(&mut self, slot: &[u8; 32], value: [u8; 32]) -> Result<(), String>;
    fn log(&mut self, topics: Vec<[u8; 32]>, data: Vec<u8>);
}

/// What the caller of a `setRules` or `setPlugins` is: they are accepted from an account
/// without code (a transaction's sender, in its top frame) and from a contract in its
/// constructor, which opts the contract in; afterwards only from contracts that opted in.
/// Otherwise any contract that forwards arbitrary calls (a multicall, a router, a relayer)
/// could be made to declare rules or plugins for itself — an allow-list no caller holds
/// would brick it (found by review).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declarer {
    /// Created in this transaction (its constructor is running).
    pub created: bool,
    /// No code: an account, not a contract.
    pub codeless: bool,
}

/// Slot index, under the rules kind, of a contract's opt-in: it declared rules or plugins
/// in its constructor, so it may change them later.
const OPTED_IN: u8 = 4;

/// One call to the contract, as the frame sees it.
#[derive(Debug)]
pub struct Call<'a> {
    pub input: &'a [u8],
    pub caller: Address,
    /// Only value actually sent (not DELEGATECALL's apparent value).
    pub sends_value: bool,
    pub is_static: bool,
    /// A session key signed the transaction and this frame's caller is its account: the
    /// key acts, and a key never changes tags or rules.
    pub session_key_caller: bool,
    pub declarer: Declarer,
    /// A `CALL` (or `STATICCALL`) of the contract itself. A `DELEGATECALL` or `CALLCODE`
    /// reaches it with its caller's caller as `caller` — a contract an attester calls could
    /// otherwise tag as the attester, or set rules for whoever called it (found by review) —
    /// so those frames only read.
    pub direct: bool,
    pub gas_limit: u64,
    pub height: Height,
    pub attesters: &'a [Address],
    pub tx_session_key: [u8; 32],
    pub tx_session_scope: Option<keel_types::policy::SessionScope>,
}

fn args_address(w: &[u8]) -> Option<Address> {
    if w.len() != 32 || w[..12].iter().any(|b| *b != 0) {
        return None;
    }
    let mut a = [0u8; 20];
    a.copy_from_slice(&w[12..]);
    Some(Address(a))
}

fn args_code(w: &[u8]) -> Option<Code> {
    if w.len() != 32 || w[2..].iter().any(|b| *b != 0) {
        return None;
    }
    Code::new([w[0], w[1]])
}

fn args_u64(w: &[u8]) -> Option<u64> {
    if w.len() != 32 || w[..24].iter().any(|b| *b != 0) {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&w[24..]);
    Some(u64::from_be_bytes(b))
}

/// Outcome of one call: output (`None`: revert) and gas beyond [`JURISDICTION_BASE_GAS`].
type Answer = (Option<Vec<u8>>, u64);

/// Runs one call to the contract over `journal`. Value cannot be sent (it would be lost):
/// such a call reverts, and so the transfer is undone; writes in a static frame revert.
pub fn run(journal: &mut dyn Journal, call: &Call<'_>) -> Result<InterpreterResult, String> {
    let mut gas = Gas::new(call.gas_limit);
    let out_of_gas = |mut gas: Gas| {
        gas.spend_all();
        Ok(InterpreterResult::new(
            InstructionResult::OutOfGas,
            Bytes::new(),
            gas,
        ))
    };
    if !gas.record_regular_cost(JURISDICTION_BASE_GAS) {
        return out_of_gas(gas);
    }
    let (answer, extra) = if call.sends_value {
        (None, 0)
    } else {
        answer(journal, call)?
    };
    if !gas.record_regular_cost(extra) {
        return out_of_gas(gas);
    }
    Ok(match answer {
        Some(out) => InterpreterResult::new(InstructionResult::Return, Bytes::from(out), gas),
        None => InterpreterResult::new(InstructionResult::Revert, Bytes::new(), gas),
    })
}

fn answer(journal: &mut dyn Journal, call: &Call<'_>) -> Result<Answer, String> {
    let Some((sel, args)) = call.input.split_first_chunk::<4>() else {
        return Ok((None, 0));
    };
    // Whole words only: a short last word would reach the decoders below (found by review:
    // `setRules` with a 1-byte third word panicked the executor, halting every node).
    if args.len() % 32 != 0 {
        return Ok((None, 0));
    }
    let words: Vec<&[u8; 32]> = args
        .chunks_exact(32)
        .filter_map(|w| w.try_into().ok())
        .collect();
    let mut load = |s: &[u8; 32]| journal.load(s);
    let sel = *sel;
    if sel == selector(TX_SESSION_KEY) && args.is_empty() {
        return Ok((Some(call.tx_session_key.to_vec()), 0));
    }
    if sel == selector(TX_SESSION_SCOPE) && args.is_empty() {
        let scope = keel_types::policy::SessionScope::abi(call.tx_session_scope.as_ref());
        return Ok((Some(scope.to_vec()), 0));
    }
    if sel == selector(TAG_COUNT) && words.len() == 1 {
        let Some(account) = args_address(words[0]) else {
            return Ok((None, 0));
        };
        let count = load(&slot(TAGS_KIND, &account, 0))?;
        return Ok((Some(count.to_vec()), SLOT_READ_GAS));
    }
    if sel == selector(TAG_AT) && words.len() == 2 {
        let (Some(account), Some(index)) = (args_address(words[0]), args_u64(words[1])) else {
            return Ok((None, 0));
        };
        let tags = read_tags(&mut load, &account)?;
        let gas = SLOT_READ_GAS * (1 + tags.len() as u64);
        let Some(tag) = usize::try_from(index).ok().and_then(|i| tags.get(i)) else {
            return Ok((None, gas));
        };
        let mut out = code_word(&tag.code).to_vec();
        out.extend_from_slice(&u64_word(tag.expires_at));
        out.extend_from_slice(&address_word(&tag.attester));
        return Ok((Some(out), gas));
    }
    if sel == selector(HAS_TAG) && words.len() == 2 {
        let (Some(account), Some(code)) = (args_address(words[0]), args_code(words[1])) else {
            return Ok((None, 0));
        };
        let tags = read_tags(&mut load, &account)?;
        let gas = SLOT_READ_GAS * (1 + tags.len() as u64);
        let has = tags
            .iter()
            .any(|t| t.code == code && t.live_at(call.height));
        return Ok((Some(u64_word(u64::from(has)).to_vec()), gas));
    }
    if sel == selector(RULES_OF) && words.len() == 1 {
        let Some(account) = args_address(words[0]) else {
            return Ok((None, 0));
        };
        let rules = read_rules(&mut load, &account)?;
        let mut out = pack_codes(&rules.deny).to_vec();
        out.extend_from_slice(&pack_codes(&rules.allow_only));
        out.extend_from_slice(
            &rules
                .untagged_max_value
                .unwrap_or(U256::MAX)
                .to_be_bytes::<32>(),
        );
        return Ok((Some(out), 4 * SLOT_READ_GAS));
    }
    if sel == selector(PLUGINS_OF) && words.len() == 1 {
        let Some(account) = args_address(words[0]) else {
            return Ok((None, 0));
        };
        let plugins = read_plugins(&mut load, &account)?;
        let mut out = vec![0u8; 4 * 32];
        for (i, p) in plugins.iter().enumerate() {
            out[32 * i + 12..32 * i + 32].copy_from_slice(&p.0);
        }
        return Ok((Some(out), SLOT_READ_GAS * (1 + plugins.len() as u64)));
    }
    // Writes from here: never in a static frame, never by a session key.
    let writes = [
        selector(TAG),
        selector(UNTAG),
        selector(SET_RULES),
        selector(SET_PLUGINS),
    ];
    if !writes.contains(&sel) || call.is_static || call.session_key_caller || !call.direct {
        return Ok((None, 0));
    }
    let declaring = sel == selector(SET_RULES) || sel == selector(SET_PLUGINS);
    if declaring && !may_declare(journal, call)? {
        return Ok((None, 0));
    }
    if let [deny, allow, cap] = words[..] {
        if sel == selector(SET_RULES) {
            return set_rules(journal, call, [deny, allow, cap]);
        }
    }
    if sel == selector(SET_PLUGINS) && words.len() == MAX_POLICY_PLUGINS {
        return set_plugins(journal, call, &words);
    }
    if !call.attesters.contains(&call.caller) {
        return Ok((None, 0));
    }
    if sel == selector(TAG) && words.len() == 3 {
        let (Some(account), Some(code), Some(expires_at)) = (
            args_address(words[0]),
            args_code(words[1]),
            args_u64(words[2]),
        ) else {
            return Ok((None, 0));
        };
        if expires_at <= call.height {
            return Ok((None, 0));
        }
        let tag = Tag {
            code,
            expires_at,
            attester: call.caller,
        };
        return tag_account(journal, call, account, Some(tag), code);
    }
    if sel == selector(UNTAG) && words.len() == 2 {
        let (Some(account), Some(code)) = (args_address(words[0]), args_code(words[1])) else {
            return Ok((None, 0));
        };
        return tag_account(journal, call, account, None, code);
    }
    Ok((None, 0))
}

/// Sets (`Some`) or removes (`None`) the caller's tag `code` on `account`. Adding drops
/// expired tags first; a full list of live tags refuses.
fn tag_account(
    journal: &mut dyn Journal,
    call: &Call<'_>,
    account: Address,
    tag: Option<Tag>,
    code: Code,
) -> Result<Answer, String> {
    let mut load = |s: &[u8; 32]| journal.load(s);
    let before = read_tags(&mut load, &account)?;
    let mine = |t: &Tag| t.attester == call.caller && t.code == code;
    let mut after: Vec<Tag> = match tag {
        Some(_) => before
            .iter()
            .filter(|t| !mine(t) && t.live_at(call.height))
            .copied()
            .collect(),
        None => before.iter().filter(|t| !mine(t)).copied().collect(),
    };
    match tag {
        Some(tag) if after.len() < MAX_TAGS_PER_ACCOUNT => after.push(tag),
        Some(_) => return Ok((None, TAG_GAS)),
        None if after.len() == before.len() => return Ok((None, 0)),
        None => {}
    }
    for i in 0..before.len().max(after.len()) {
        let word = after.get(i).map_or([0; 32], Tag::to_slot);
        journal.store(&slot(TAGS_KIND, &account, i as u8 + 1), word)?;
    }
    journal.store(&slot(TAGS_KIND, &account, 0), u64_word(after.len() as u64))?;
    let (expires_at, reason) = match tag {
        Some(t) => (t.expires_at, 1),
        None => (0, 2),
    };
    let mut data = code_word(&code).to_vec();
    data.extend_from_slice(&u64_word(expires_at));
    data.extend_from_slice(&u64_word(reason));
    journal.log(
        vec![
            tag_changed_topic(),
            address_word(&account),
            address_word(&call.caller),
        ],
        data,
    );
    Ok((Some(Vec::new()), TAG_GAS))
}

/// The caller's own rules: the four words, and the count of ruled addresses when it moves
/// between none and some.
fn set_rules(
    journal: &mut dyn Journal,
    call: &Call<'_>,
    [deny, allow, cap]: [&[u8; 32]; 3],
) -> Result<Answer, String> {
    let (Some(deny), Some(allow_only)) = (unpack_codes(deny), unpack_codes(allow)) else {
        return Ok((None, 0));
    };
    let cap = U256::from_be_bytes(*cap);
    let rules = Rules {
        deny,
        allow_only,
        untagged_max_value: (cap != U256::MAX).then_some(cap),
    };
    let before = declares(journal, &call.caller)?;
    for (i, word) in rules.to_slots().into_iter().enumerate() {
        journal.store(&slot(RULES_KIND, &call.caller, i as u8), word)?;
    }
    recount(journal, &call.caller, before)?;
    let reason = if rules.is_empty() { 2 } else { 1 };
    journal.log(
        vec![rules_changed_topic(), address_word(&call.caller)],
        u64_word(reason).to_vec(),
    );
    Ok((Some(Vec::new()), RULES_GAS))
}

/// The caller's own plugins: up to four distinct non-zero addresses (zero words are
/// skipped), replacing the ones before.
fn set_plugins(
    journal: &mut dyn Journal,
    call: &Call<'_>,
    words: &[&[u8; 32]],
) -> Result<Answer, String> {
    let mut plugins: Vec<Address> = Vec::new();
    for word in words {
        let Some(a) = args_address(&word[..]) else {
            return Ok((None, 0));
        };
        if a == Address::ZERO {
            continue;
        }
        if plugins.contains(&a) || a == JURISDICTION_ADDRESS {
            return Ok((None, 0));
        }
        plugins.push(a);
    }
    let before = declares(journal, &call.caller)?;
    journal.store(
        &slot(PLUGINS_KIND, &call.caller, 0),
        u64_word(plugins.len() as u64),
    )?;
    for i in 0..MAX_POLICY_PLUGINS {
        let mut word = [0u8; 32];
        if let Some(p) = plugins.get(i) {
            word[..20].copy_from_slice(&p.0);
        }
        journal.store(&slot(PLUGINS_KIND, &call.caller, i as u8 + 1), word)?;
    }
    recount(journal, &call.caller, before)?;
    journal.log(
        vec![plugins_changed_topic(), address_word(&call.caller)],
        u64_word(plugins.len() as u64).to_vec(),
    );
    Ok((Some(Vec::new()), PLUGINS_GAS))
}

/// A log of the contract, as revm's journal takes it.
pub fn to_log(topics: Vec<[u8; 32]>, data: Vec<u8>) -> Log {
    Log {
        address: keel_exec_evm::to_revm(&JURISDICTION_ADDRESS),
        data: LogData::new_unchecked(
            topics.into_iter().map(B256::from).collect(),
            Bytes::from(data),
        ),
    }
}

pub(crate) const JURISDICTION: RevmAddress =
    RevmAddress::new(keel_types::jurisdiction::JURISDICTION_ADDRESS.0);

/// The jurisdiction contract's slots and logs in the transaction's journal.
pub(crate) struct JurisdictionJournal<'c, 'a>(pub(crate) &'c mut KeelCtx<'a>);

impl JurisdictionJournal<'_, '_> {
    /// revm's journal reads and writes slots only of accounts it has loaded.
    pub(crate) fn load_account(&mut self) -> Result<(), String> {
        self.0
            .journal_mut()
            .load_account(JURISDICTION)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    pub(crate) fn read(&mut self, slot: &[u8; 32]) -> Result<[u8; 32], String> {
        self.load_account()?;
        self.0
            .journal_mut()
            .sload(JURISDICTION, U256::from_be_bytes(*slot))
            .map(|load| load.data.to_be_bytes::<32>())
            .map_err(|e| e.to_string())
    }
}

impl Journal for JurisdictionJournal<'_, '_> {
    fn load(&mut self, slot: &[u8; 32]) -> Result<[u8; 32], String> {
        self.read(slot)
    }

    fn store(&mut self, slot: &[u8; 32], value: [u8; 32]) -> Result<(), String> {
        self.load_account()?;
        self.0
            .journal_mut()
            .sstore(
                JURISDICTION,
                U256::from_be_bytes(*slot),
                U256::from_be_bytes(value),
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn log(&mut self, topics: Vec<[u8; 32]>, data: Vec<u8>) {
        self.0.journal_mut().log(to_log(topics, data));
    }
}

/// The live codes of `caller` for WASM's `caller_tags`, and their price: each slot read as
/// the EVM prices an `SLOAD` (cold or warm), the contract's account as an account access.
pub(crate) fn caller_tags(
    ctx: &mut KeelCtx<'_>,
    caller: &Address,
) -> Result<(Vec<[u8; 2]>, u64), String> {
    use crate::bridge::{COLD_ACCOUNT_ACCESS, COLD_SLOAD, WARM_ACCESS};
    let account_cold = ctx
        .journal_mut()
        .load_account(JURISDICTION)
        .map_err(|e| e.to_string())?
        .is_cold;
    let mut cost = if account_cold {
        COLD_ACCOUNT_ACCESS
    } else {
        WARM_ACCESS
    };
    let height = ctx.block.number.saturating_to::<u64>();
    let codes = live_codes(
        &mut |slot: &[u8; 32]| -> Result<[u8; 32], String> {
            let load = ctx
                .journal_mut()
                .sload(JURISDICTION, RevmU256::from_be_bytes(*slot))
                .map_err(|e| e.to_string())?;
            cost += if load.is_cold {
                COLD_SLOAD
            } else {
                WARM_ACCESS
            };
            Ok(load.data.to_be_bytes::<32>())
        },
        caller,
        height,
    )?;
    Ok((codes.into_iter().map(|c| c.0).collect(), cost))
}

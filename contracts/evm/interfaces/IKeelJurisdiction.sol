// SPDX-License-Identifier: MIT
// Jurisdiction tags and rules as contracts see them: the system contract at 0x…9013
// (keel_types::jurisdiction::JURISDICTION_ADDRESS; runtime/src/jurisdiction.rs;
// docs/policies.md, "Jurisdiction rules"). WASM contracts reach the same functions with
// `call` / `static_call` to that address.
pragma solidity 0.8.28;

interface IKeelJurisdiction {
    /// Why a call frame was refused by its target's rules (the revert data of a nested
    /// frame). `rule`: 19 denied code (`used` = the code as a number), 20 not an allowed
    /// code, 21 untagged caller over the value cap (`limit` the cap, `used` the value).
    error JurisdictionDenied(uint8 rule, address target, address caller, uint256 limit, uint256 used);

    /// Every tag change; reason 1 tagged, 2 untagged.
    event TagChanged(
        address indexed account, address indexed attester, bytes2 code, uint64 expiresAt, uint8 reason
    );
    /// Every plugin change, with how many are attached now.
    event PluginsChanged(address indexed account, uint8 count);
    /// Every rules change; reason 1 set, 2 cleared.
    event RulesChanged(address indexed account, uint8 reason);

    /// A genesis attester tags `account` with an ISO 3166-1 alpha-2 `code` (e.g. "US") that
    /// counts while the height is below `expiresAt`; tagging the same code again replaces.
    function tag(address account, bytes2 code, uint64 expiresAt) external;

    /// The attester removes its own tag.
    function untag(address account, bytes2 code) external;

    /// The caller's own rules: `deny` and `allowOnly` hold up to 16 codes, two bytes each,
    /// zero-padded; `untaggedMaxValue` = type(uint256).max means no cap. All empty clears.
    function setRules(bytes32 deny, bytes32 allowOnly, uint256 untaggedMaxValue) external;

    /// The policy plugins (zero: none) that check every transaction calling or paying the
    /// caller, before it runs, as an account policy's plugins check the account's own; all
    /// zero detaches them.
    function setPlugins(address p0, address p1, address p2, address p3) external;

    /// The plugins `account` attaches, zero-padded.
    function pluginsOf(address account) external view returns (address, address, address, address);

    /// Stored tags of `account`, live or expired.
    function tagCount(address account) external view returns (uint256);

    /// The `index`-th stored tag; reverts past the end.
    function tagAt(address account, uint256 index)
        external
        view
        returns (bytes2 code, uint64 expiresAt, address attester);

    /// Whether `account` holds a live tag with `code`, by any attester.
    function hasTag(address account, bytes2 code) external view returns (bool);

    /// The rules `account` declares.
    function rulesOf(address account)
        external
        view
        returns (bytes32 deny, bytes32 allowOnly, uint256 untaggedMaxValue);

    /// The session key that signed the current transaction, zero if none (WASM:
    /// `tx_session_key`). Like tx.origin it belongs to the transaction, not to the caller.
    function txSessionKey() external view returns (bytes32);

    /// The scope of that session key, as the transaction's policy decision read it (WASM:
    /// `tx_session_scope`); all zero if the account's own key signed. `type(uint256).max`
    /// is no limit (and, for `targets`, any target). The budgets and `*Used` are of `epoch`
    /// and count what the key used before this transaction.
    function txSessionScope()
        external
        view
        returns (
            bytes32 key,
            uint64 expiresAt,
            uint64 epoch,
            uint256 maxValuePerTx,
            uint256 maxValuePerEpoch,
            uint256 maxFeePerEpoch,
            uint256 maxTxsPerEpoch,
            uint256 valueUsed,
            uint256 feesUsed,
            uint256 txsUsed,
            uint256 targets
        );
}

IKeelJurisdiction constant KEEL_JURISDICTION = IKeelJurisdiction(0x0000000000000000000000000000000000009013);

// SPDX-License-Identifier: MIT
// The validator registry as contracts see it: a read-only precompile at 0x…9012
// (keel_types::validator::REGISTRY_ADDRESS; runtime/src/registry_read.rs; docs/validators.md).
// WASM contracts reach the same functions with `static_call` to that address.
pragma solidity 0.8.28;

interface IKeelValidators {
    /// `status`: 0 candidate, 1 active, 2 leaving, 3 jailed. Every field is zero for a key
    /// that is not registered. `nextKey` is a rotation announced for the next boundary.
    function getValidator(bytes32 key)
        external
        view
        returns (
            bool registered,
            address operator,
            uint256 stake,
            uint8 status,
            uint64 changedEpoch,
            bytes32 nextKey
        );

    /// Registered keys, whatever their status.
    function validatorCount() external view returns (uint256);

    /// The `index`-th registered key, ascending; reverts past the end.
    function validatorAt(uint256 index) external view returns (bytes32);
}

IKeelValidators constant KEEL_VALIDATORS = IKeelValidators(0x0000000000000000000000000000000000009012);

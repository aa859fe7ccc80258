// SPDX-License-Identifier: MIT
// A storage-heavy key → value registry: one slot per key plus a count of live keys.
// wasm/registry.c is the same contract (ABI, storage layout, logs, revert data).
pragma solidity 0.8.28;

contract Registry {
    mapping(uint256 => uint256) public get; // slot 0
    uint256 public count; // slot 1: keys with a non-zero value

    uint256 constant MAX_RANGE = 32;

    event Set(uint256 indexed key, uint256 value);

    error TooMany(uint256 n);

    function set(uint256 key, uint256 value) public {
        uint256 old = get[key];
        get[key] = value;
        if (old == 0 && value != 0) count += 1;
        if (old != 0 && value == 0) count -= 1;
        emit Set(key, value);
    }

    /// Writes `value` under keys start .. start+n-1 (checked: start + i may not overflow).
    function setRange(uint256 start, uint256 n, uint256 value) external {
        if (n > MAX_RANGE) revert TooMany(n);
        for (uint256 i = 0; i < n; i++) {
            set(start + i, value);
        }
    }
}

// SPDX-License-Identifier: MIT
// The same compute-, memory- and host-call-heavy loops as wasm/compute.c, for the
// WASM-versus-EVM benchmark that calibrates WASM's ink table (BENCHMARKS.md).
pragma solidity 0.8.28;

contract Compute {
    /// n rounds of a 64-bit LCG mixed with xor-shifts; returns the final state.
    function run(uint256 n) external pure returns (uint256) {
        uint64 x = 0x9E3779B97F4A7C15;
        unchecked {
            for (uint256 i = 0; i < n; i++) {
                x = x * 6364136223846793005 + 1442695040888963407;
                x ^= x >> 29;
            }
        }
        return x;
    }

    /// Memory-heavy: n rounds of a load and a store over a 512-entry scratch array in
    /// memory (MLOAD/MSTORE with bounds checks); returns the running sum.
    function mem(uint256 n) external pure returns (uint256) {
        uint64[] memory a = new uint64[](512);
        uint64 acc = 0;
        unchecked {
            for (uint256 i = 0; i < n; i++) {
                acc += a[(i * 7) & 511];
                a[i & 511] = acc ^ uint64(i);
            }
        }
        return acc;
    }

    /// Host-call-heavy: n chained keccak-256 hashes of a 32-byte word (KECCAK256 in the
    /// EVM, the keccak256 host function in WASM).
    function hash(uint256 n) external pure returns (bytes32 h) {
        h = bytes32(n);
        for (uint256 i = 0; i < n; i++) {
            assembly {
                mstore(0, h)
                h := keccak256(0, 32)
            }
        }
    }
}

// SPDX-License-Identifier: MIT
// The same compute-heavy loop as wasm/compute.c, for the WASM-versus-EVM benchmark.
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
}

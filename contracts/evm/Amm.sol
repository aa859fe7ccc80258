// SPDX-License-Identifier: MIT
// A constant-product swap pool over two virtual reserves (0.3% fee). wasm/amm.c is the same
// contract: ABI, storage layout, logs and revert data. Amounts are bounded (≤ 2^24 per call,
// reserves ≤ 2^26) so the WASM version computes exactly in 64-bit words.
pragma solidity 0.8.28;

contract Amm {
    uint256 public reserve0; // slot 0
    uint256 public reserve1; // slot 1
    mapping(address => uint256) public shares; // slot 2
    uint256 public totalShares; // slot 3

    uint256 constant MAX_AMOUNT = 1 << 24;
    uint256 constant MAX_RESERVE = 1 << 26;

    event Liquidity(address indexed who, uint256 amount0, uint256 amount1);
    event Swap(address indexed who, uint256 zeroForOne, uint256 amountIn, uint256 amountOut);

    error TooLarge();
    error EmptyPool();
    error Slippage(uint256 amountOut, uint256 minOut);

    function addLiquidity(uint256 amount0, uint256 amount1) external {
        if (amount0 > MAX_AMOUNT || amount1 > MAX_AMOUNT) revert TooLarge();
        uint256 r0 = reserve0 + amount0;
        uint256 r1 = reserve1 + amount1;
        if (r0 > MAX_RESERVE || r1 > MAX_RESERVE) revert TooLarge();
        reserve0 = r0;
        reserve1 = r1;
        shares[msg.sender] += amount0 + amount1;
        totalShares += amount0 + amount1;
        emit Liquidity(msg.sender, amount0, amount1);
    }

    function swap(uint256 zeroForOne, uint256 amountIn, uint256 minOut) external returns (uint256 out) {
        if (amountIn == 0 || amountIn > MAX_AMOUNT) revert TooLarge();
        bool dir = zeroForOne != 0;
        (uint256 rIn, uint256 rOut) = dir ? (reserve0, reserve1) : (reserve1, reserve0);
        if (rIn == 0 || rOut == 0) revert EmptyPool();
        out = (amountIn * 997 * rOut) / (rIn * 1000 + amountIn * 997);
        if (out < minOut) revert Slippage(out, minOut);
        if (rIn + amountIn > MAX_RESERVE) revert TooLarge();
        if (dir) {
            reserve0 = rIn + amountIn;
            reserve1 = rOut - out;
        } else {
            reserve1 = rIn + amountIn;
            reserve0 = rOut - out;
        }
        emit Swap(msg.sender, dir ? 1 : 0, amountIn, out);
    }
}

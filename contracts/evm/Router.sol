// SPDX-License-Identifier: MIT
// Calls a token (in either environment) from the other one. wasm/router.c is the same contract.
pragma solidity 0.8.28;

interface IToken {
    function transfer(address to, uint256 value) external returns (bool);
}

contract Router {
    uint256 public relays; // slot 0: incremented by every relay, rolled back with it
    uint256 public lastOk; // slot 1: 1 if the last relay's inner call succeeded, else 0

    event Relayed(address indexed token, uint256 ok);

    /// mode 0: bubble an inner revert; 1: record the inner failure and carry on;
    /// 2: revert after the inner call succeeded (rolling the callee back too).
    function relay(address token, address to, uint256 amount, uint256 mode) external {
        relays += 1;
        (bool ok, bytes memory ret) =
            token.call(abi.encodeWithSelector(IToken.transfer.selector, to, amount));
        if (!ok && mode == 0) {
            assembly { revert(add(ret, 32), mload(ret)) }
        }
        lastOk = ok ? 1 : 0;
        emit Relayed(token, lastOk);
        if (mode == 2) revert("router: mode 2");
    }
}

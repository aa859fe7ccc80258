/* Policy plugin (docs/policies.md): an allow-list of targets its owner maintains. An account
 * (or a session key) that attaches it may send to or call only the targets on the list.
 *
 *   deploy()                         the deployer is the owner (slot 0)
 *   allow(address target, uint256 on) owner only: on != 0 lists it, 0 removes it (mapping at slot 1)
 *   allowed(address target) -> uint256
 *   check(address sender, address account, bytes32 sessionKey, address target, bytes4 selector,
 *         uint256 value, uint8 env, uint64 epoch, uint256 spentValue, uint256 spentFees,
 *         uint64 txs, bytes2[] tags) -> uint256   0 = allow, 1 = the target is not listed
 *
 * The runtime calls check read-only with a fixed gas budget before the transaction runs. */
#include "keel.h"

#define MAX_INPUT 512
static u8 input[MAX_INPUT];

static void listed_slot(word *slot, const u8 *address_word) {
    word key, base;
    copy(key.b, address_word, 32);
    word_from_u64(&base, 1);
    mapping_slot(slot, &key, &base);
}

EXPORT(deploy) int deploy(u32 len) {
    require_no_value();
    (void)len;
    u8 a[20];
    word owner, slot;
    keel_caller(a);
    word_from_address(&owner, a);
    word_from_u64(&slot, 0);
    store(&slot, &owner);
    return 0;
}

EXPORT(call) int call(u32 len) {
    if (len < 4 || len > MAX_INPUT) revert_empty();
    keel_read_input(input);
    u32 args = (len - 4) / 32;
    word slot, v;
    switch (selector_of(input)) {
    case 0x6c6f31f2: { /* allow(address,uint256) */
        require_no_value();
        if (args < 2 || !valid_address(arg(input, 0))) revert_empty();
        u8 a[20];
        word caller, owner;
        keel_caller(a);
        word_from_address(&caller, a);
        word_from_u64(&slot, 0);
        load(&slot, &owner);
        if (word_lt(&owner, &caller) || word_lt(&caller, &owner)) revert_empty(); /* owner only */
        listed_slot(&slot, arg(input, 0));
        copy(v.b, arg(input, 1), 32);
        store(&slot, &v);
        keel_return_data(input, 0);
        return 0;
    }
    case 0xd63a8e11: /* allowed(address) */
        require_no_value();
        if (args < 1) revert_empty();
        listed_slot(&slot, arg(input, 0));
        load(&slot, &v);
        return_word(&v);
        return 0;
    case 0xd30425a3: { /* check(address,address,bytes32,address,bytes4,uint256,uint8,uint64,uint256,uint256,uint64,bytes2[]) */
        if (args < 11) revert_empty();
        listed_slot(&slot, arg(input, 3));
        load(&slot, &v);
        word code;
        word_from_u64(&code, is_zero(v.b, 32) ? 1 : 0);
        return_word(&code);
        return 0;
    }
    case 0x8da5cb5b: /* owner() */
        word_from_u64(&slot, 0);
        load(&slot, &v);
        return_word(&v);
        return 0;
    default:
        revert_empty();
    }
}

/* ERC-20-style token for keel's WASM environment: the same ABI, storage layout (balances at
 * mapping slot 0, allowances at 1, totalSupply at 2), logs and revert data as evm/Token.sol. */
#include "keel.h"

#define MAX_INPUT 1024
static u8 input[MAX_INPUT];

static const u8 TRANSFER_TOPIC[32] = {
    0xdd, 0xf2, 0x52, 0xad, 0x1b, 0xe2, 0xc8, 0x9b, 0x69, 0xc2, 0xb0, 0x68, 0xfc, 0x37, 0x8d, 0xaa,
    0x95, 0x2b, 0xa7, 0xf1, 0x63, 0xc4, 0xa1, 0x16, 0x28, 0xf5, 0x5a, 0x4d, 0xf5, 0x23, 0xb3, 0xef};
static const u8 APPROVAL_TOPIC[32] = {
    0x8c, 0x5b, 0xe1, 0xe5, 0xeb, 0xec, 0x7d, 0x5b, 0xd1, 0x4f, 0x71, 0x42, 0x7d, 0x1e, 0x84, 0xf3,
    0xdd, 0x03, 0x14, 0xc0, 0xf7, 0xb2, 0x29, 0x1e, 0x5b, 0x20, 0x0a, 0xc8, 0xc7, 0xc3, 0xb9, 0x25};
#define INSUFFICIENT_BALANCE 0xcf479181u
#define INSUFFICIENT_ALLOWANCE 0x2a1b2dd8u

static void slot_const(word *w, u64 v) { word_from_u64(w, v); }

static void balance_slot(word *out, const word *owner) {
    word base;
    slot_const(&base, 0);
    mapping_slot(out, owner, &base);
}

static void allowance_slot(word *out, const word *owner, const word *spender) {
    word base, inner;
    slot_const(&base, 1);
    mapping_slot(&inner, owner, &base);
    mapping_slot(out, spender, &inner);
}

static void emit3(const u8 *topic0, const word *a, const word *b, const word *value) {
    u8 topics[96];
    copy(topics, topic0, 32);
    copy(topics + 32, a->b, 32);
    copy(topics + 64, b->b, 32);
    keel_emit_log(topics, 3, value->b, 32);
}

static void move(const word *from, const word *to, const word *value) {
    word from_slot, to_slot, available, left, to_balance, sum;
    balance_slot(&from_slot, from);
    load(&from_slot, &available);
    if (word_lt(&available, value)) revert_error2(INSUFFICIENT_BALANCE, &available, value);
    word_sub(&left, &available, value);
    store(&from_slot, &left);
    balance_slot(&to_slot, to);
    load(&to_slot, &to_balance);
    if (word_add(&sum, &to_balance, value)) revert_panic(0x11);
    store(&to_slot, &sum);
    emit3(TRANSFER_TOPIC, from, to, value);
}

static void sender(word *w) {
    u8 a[20];
    keel_caller(a);
    word_from_address(w, a);
}

EXPORT(deploy) int deploy(u32 len) {
    require_no_value();
    if (len < 32 || len > MAX_INPUT) revert_empty();
    keel_read_input(input);
    word supply, owner, slot, zero_addr;
    copy(supply.b, input, 32);
    sender(&owner);
    balance_slot(&slot, &owner);
    store(&slot, &supply);
    slot_const(&slot, 2);
    store(&slot, &supply);
    word_from_u64(&zero_addr, 0);
    emit3(TRANSFER_TOPIC, &zero_addr, &owner, &supply);
    return 0;
}

EXPORT(call) int call(u32 len) {
    if (len < 4 || len > MAX_INPUT) revert_empty();
    keel_read_input(input);
    u32 args = (len - 4) / 32;
    word me, a, b, v, slot;
    switch (selector_of(input)) {
    case 0xa9059cbb: /* transfer(address,uint256) */
        require_no_value();
        if (args < 2 || !valid_address(arg(input, 0))) revert_empty();
        copy(a.b, arg(input, 0), 32);
        copy(v.b, arg(input, 1), 32);
        sender(&me);
        move(&me, &a, &v);
        return_true();
        return 0;
    case 0x095ea7b3: /* approve(address,uint256) */
        require_no_value();
        if (args < 2 || !valid_address(arg(input, 0))) revert_empty();
        copy(a.b, arg(input, 0), 32);
        copy(v.b, arg(input, 1), 32);
        sender(&me);
        allowance_slot(&slot, &me, &a);
        store(&slot, &v);
        emit3(APPROVAL_TOPIC, &me, &a, &v);
        return_true();
        return 0;
    case 0x23b872dd: { /* transferFrom(address,address,uint256) */
        require_no_value();
        if (args < 3 || !valid_address(arg(input, 0)) || !valid_address(arg(input, 1))) revert_empty();
        word allowed, left;
        copy(a.b, arg(input, 0), 32);
        copy(b.b, arg(input, 1), 32);
        copy(v.b, arg(input, 2), 32);
        sender(&me);
        allowance_slot(&slot, &a, &me);
        load(&slot, &allowed);
        if (word_lt(&allowed, &v)) revert_error2(INSUFFICIENT_ALLOWANCE, &allowed, &v);
        word_sub(&left, &allowed, &v);
        store(&slot, &left);
        move(&a, &b, &v);
        return_true();
        return 0;
    }
    case 0x70a08231: /* balanceOf(address) */
        require_no_value();
        if (args < 1 || !valid_address(arg(input, 0))) revert_empty();
        copy(a.b, arg(input, 0), 32);
        balance_slot(&slot, &a);
        load(&slot, &v);
        return_word(&v);
        return 0;
    case 0xdd62ed3e: /* allowance(address,address) */
        require_no_value();
        if (args < 2 || !valid_address(arg(input, 0)) || !valid_address(arg(input, 1))) revert_empty();
        copy(a.b, arg(input, 0), 32);
        copy(b.b, arg(input, 1), 32);
        allowance_slot(&slot, &a, &b);
        load(&slot, &v);
        return_word(&v);
        return 0;
    case 0x18160ddd: /* totalSupply() */
        require_no_value();
        slot_const(&slot, 2);
        load(&slot, &v);
        return_word(&v);
        return 0;
    default:
        revert_empty();
    }
}

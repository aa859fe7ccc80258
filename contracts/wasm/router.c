/* Router for keel's WASM environment, the same contract as evm/Router.sol: relays a token
 * transfer to a token in either environment and shows what an inner revert rolls back. */
#include "keel.h"

#define MAX_INPUT 1024
static u8 input[MAX_INPUT];
static u8 ret[MAX_INPUT];

static const u8 RELAYED_TOPIC[32] = {
    0xec, 0x7c, 0x83, 0x9a, 0x6b, 0xd0, 0x93, 0xbe, 0x4d, 0x11, 0x1c, 0xb9, 0xdf, 0x25, 0x6f, 0xf3,
    0x6f, 0x6a, 0x0d, 0x25, 0x2c, 0xa5, 0x07, 0x92, 0x9e, 0x28, 0xd0, 0xee, 0x00, 0xba, 0x46, 0xc0};

/* Error(string) "router: mode 2", ABI-encoded as solc's revert("...") does. */
static void revert_mode2(void) {
    static const char msg[] = "router: mode 2";
    u8 *p = scratch;
    zero(p, 100);
    p[0] = 0x08; p[1] = 0xc3; p[2] = 0x79; p[3] = 0xa0;
    p[4 + 31] = 0x20;
    p[36 + 31] = sizeof msg - 1;
    copy(p + 68, (const u8 *)msg, sizeof msg - 1);
    keel_revert(p, 100);
}

EXPORT(call) int call(u32 len) {
    if (len < 4 || len > MAX_INPUT) revert_empty();
    keel_read_input(input);
    u32 args = (len - 4) / 32;
    word slot, v, one, sum;
    switch (selector_of(input)) {
    case 0xb30056d5: { /* relay(address,address,uint256,uint256) */
        require_no_value();
        if (args < 4 || !valid_address(arg(input, 0)) || !valid_address(arg(input, 1))) revert_empty();
        word_from_u64(&slot, 0);
        load(&slot, &v);
        word_from_u64(&one, 1);
        if (word_add(&sum, &v, &one)) revert_panic(0x11);
        store(&slot, &sum);
        u8 call_data[68];
        call_data[0] = 0xa9; call_data[1] = 0x05; call_data[2] = 0x9c; call_data[3] = 0xbb;
        copy(call_data + 4, arg(input, 1), 64); /* to, amount */
        u8 token[20], value[32];
        copy(token, arg(input, 0) + 12, 20);
        zero(value, 32);
        int failed = keel_call(token, value, call_data, 68, 0);
        word mode;
        copy(mode.b, arg(input, 3), 32);
        u64 m = word_low_u64(&mode);
        int mode_small = is_zero(mode.b, 24);
        if (failed && mode_small && m == 0) {
            u32 n = keel_return_data_size();
            if (n > MAX_INPUT) n = MAX_INPUT; /* never: token reverts are at most 68 bytes */
            keel_return_data_copy(ret, 0, n);
            keel_revert(ret, n);
        }
        word ok;
        word_from_u64(&ok, failed ? 0 : 1);
        word_from_u64(&slot, 1);
        store(&slot, &ok);
        u8 topics[64];
        copy(topics, RELAYED_TOPIC, 32);
        copy(topics + 32, arg(input, 0), 32);
        keel_emit_log(topics, 2, ok.b, 32);
        if (mode_small && m == 2) revert_mode2();
        keel_return_data(ret, 0);
        return 0;
    }
    case 0x6cbb60c9: /* relays() */
        require_no_value();
        word_from_u64(&slot, 0);
        load(&slot, &v);
        return_word(&v);
        return 0;
    case 0x8d05197c: /* lastOk() */
        require_no_value();
        word_from_u64(&slot, 1);
        load(&slot, &v);
        return_word(&v);
        return 0;
    default:
        revert_empty();
    }
}

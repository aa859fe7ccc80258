/* Storage-heavy registry for keel's WASM environment, the same contract as
 * evm/Registry.sol: values mapping at slot 0, live-key count at slot 1, Set logs, TooMany and
 * Panic(0x11) reverts. */
#include "keel.h"

#define MAX_INPUT 1024
#define MAX_RANGE 32
static u8 input[MAX_INPUT];

static const u8 SET_TOPIC[32] = {
    0x54, 0x5b, 0x62, 0x0a, 0x30, 0x00, 0xf6, 0x30, 0x3b, 0x15, 0x8b, 0x32, 0x1f, 0x06, 0xb4, 0xe9,
    0x5e, 0x28, 0xa2, 0x7d, 0x70, 0xae, 0xca, 0xc8, 0xc6, 0xbd, 0xac, 0x4f, 0x48, 0xa9, 0xf6, 0xb3};
#define TOO_MANY 0xb7e9260au

static void set(const word *key, const word *value) {
    word base, slot, old, count_slot, count, one, next;
    word_from_u64(&base, 0);
    mapping_slot(&slot, key, &base);
    load(&slot, &old);
    store(&slot, value);
    word_from_u64(&count_slot, 1);
    word_from_u64(&one, 1);
    int was = !is_zero(old.b, 32), now = !is_zero(value->b, 32);
    if (!was && now) {
        load(&count_slot, &count);
        if (word_add(&next, &count, &one)) revert_panic(0x11);
        store(&count_slot, &next);
    }
    if (was && !now) {
        load(&count_slot, &count);
        if (word_lt(&count, &one)) revert_panic(0x11);
        word_sub(&next, &count, &one);
        store(&count_slot, &next);
    }
    u8 topics[64];
    copy(topics, SET_TOPIC, 32);
    copy(topics + 32, key->b, 32);
    keel_emit_log(topics, 2, value->b, 32);
}

EXPORT(call) int call(u32 len) {
    if (len < 4 || len > MAX_INPUT) revert_empty();
    keel_read_input(input);
    u32 args = (len - 4) / 32;
    word key, value, slot, v;
    switch (selector_of(input)) {
    case 0x1ab06ee5: /* set(uint256,uint256) */
        require_no_value();
        if (args < 2) revert_empty();
        copy(key.b, arg(input, 0), 32);
        copy(value.b, arg(input, 1), 32);
        set(&key, &value);
        keel_return_data(input, 0);
        return 0;
    case 0x77b2521f: { /* setRange(uint256,uint256,uint256) */
        require_no_value();
        if (args < 3) revert_empty();
        word n, max, start, index, k;
        copy(n.b, arg(input, 1), 32);
        word_from_u64(&max, MAX_RANGE);
        if (word_lt(&max, &n)) revert_error1(TOO_MANY, &n);
        copy(start.b, arg(input, 0), 32);
        copy(value.b, arg(input, 2), 32);
        u64 count = word_low_u64(&n);
        for (u64 i = 0; i < count; i++) {
            word_from_u64(&index, i);
            if (word_add(&k, &start, &index)) revert_panic(0x11);
            set(&k, &value);
        }
        keel_return_data(input, 0);
        return 0;
    }
    case 0x9507d39a: { /* get(uint256) */
        require_no_value();
        if (args < 1) revert_empty();
        word base;
        copy(key.b, arg(input, 0), 32);
        word_from_u64(&base, 0);
        mapping_slot(&slot, &key, &base);
        load(&slot, &v);
        return_word(&v);
        return 0;
    }
    case 0x06661abd: /* count() */
        require_no_value();
        word_from_u64(&slot, 1);
        load(&slot, &v);
        return_word(&v);
        return 0;
    default:
        revert_empty();
    }
}

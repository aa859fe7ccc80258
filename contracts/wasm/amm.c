/* Constant-product swap pool for keel's WASM environment, the same contract as evm/Amm.sol:
 * ABI, storage layout (reserve0 at slot 0, reserve1 at 1, shares mapping at 2, totalShares
 * at 3), logs and revert data. Amounts are bounded (≤ 2^24, reserves ≤ 2^26), so 64-bit
 * arithmetic is exact: amountIn·997·rOut < 2^24·2^10·2^26 = 2^60. */
#include "keel.h"

#define MAX_INPUT 1024
#define MAX_AMOUNT (1ull << 24)
#define MAX_RESERVE (1ull << 26)
static u8 input[MAX_INPUT];

static const u8 LIQUIDITY_TOPIC[32] = {
    0x7c, 0x30, 0x0d, 0xc5, 0x7e, 0x5d, 0x90, 0xec, 0x95, 0x10, 0xfe, 0x63, 0xde, 0xe9, 0x15, 0x6c,
    0x75, 0xc1, 0xf2, 0x05, 0x62, 0xad, 0xae, 0x30, 0x76, 0x24, 0x8b, 0x0c, 0x1b, 0x27, 0xe9, 0x0c};
static const u8 SWAP_TOPIC[32] = {
    0x56, 0x20, 0xe5, 0x42, 0xb9, 0xce, 0x6a, 0x03, 0xdb, 0xe5, 0xaf, 0x2c, 0x64, 0x83, 0xe7, 0x66,
    0xaf, 0x6c, 0x96, 0x43, 0x95, 0x62, 0xb2, 0x6a, 0x0d, 0xcd, 0x2e, 0xdd, 0x70, 0x99, 0x52, 0x4b};
#define TOO_LARGE 0x218e0a07u
#define EMPTY_POOL 0x11077125u
#define SLIPPAGE 0x2746152au

/* A uint256 argument as u64 if it is at most `max`, else TooLarge(). */
static u64 bounded(const u8 *w, u64 max) {
    word v;
    copy(v.b, w, 32);
    if (!is_zero(v.b, 24)) revert_error0(TOO_LARGE);
    u64 x = word_low_u64(&v);
    if (x > max) revert_error0(TOO_LARGE);
    return x;
}

static u64 load_u64(u64 slot_index) {
    word slot, v;
    word_from_u64(&slot, slot_index);
    load(&slot, &v);
    return word_low_u64(&v); /* reserves never exceed 2^26 */
}

static void store_u64(u64 slot_index, u64 value) {
    word slot, v;
    word_from_u64(&slot, slot_index);
    word_from_u64(&v, value);
    store(&slot, &v);
}

static void sender(word *w) {
    u8 a[20];
    keel_caller(a);
    word_from_address(w, a);
}

static void add_to(const word *slot, u64 amount) {
    word v, add, sum;
    load(slot, &v);
    word_from_u64(&add, amount);
    if (word_add(&sum, &v, &add)) revert_panic(0x11);
    store(slot, &sum);
}

EXPORT(call) int call(u32 len) {
    if (len < 4 || len > MAX_INPUT) revert_empty();
    keel_read_input(input);
    u32 args = (len - 4) / 32;
    word slot, v, who;
    switch (selector_of(input)) {
    case 0x9cd441da: { /* addLiquidity(uint256,uint256) */
        require_no_value();
        if (args < 2) revert_empty();
        u64 a0 = bounded(arg(input, 0), MAX_AMOUNT);
        u64 a1 = bounded(arg(input, 1), MAX_AMOUNT);
        u64 r0 = load_u64(0) + a0, r1 = load_u64(1) + a1;
        if (r0 > MAX_RESERVE || r1 > MAX_RESERVE) revert_error0(TOO_LARGE);
        store_u64(0, r0);
        store_u64(1, r1);
        sender(&who);
        word base;
        word_from_u64(&base, 2);
        mapping_slot(&slot, &who, &base);
        add_to(&slot, a0 + a1);
        word_from_u64(&slot, 3);
        add_to(&slot, a0 + a1);
        u8 topics[64], data[64];
        copy(topics, LIQUIDITY_TOPIC, 32);
        copy(topics + 32, who.b, 32);
        copy(data, arg(input, 0), 32);
        copy(data + 32, arg(input, 1), 32);
        keel_emit_log(topics, 2, data, 64);
        keel_return_data(data, 0);
        return 0;
    }
    case 0x9d9892cd: { /* swap(uint256,uint256,uint256) */
        require_no_value();
        if (args < 3) revert_empty();
        int dir = !is_zero(arg(input, 0), 32);
        u64 amount_in = bounded(arg(input, 1), MAX_AMOUNT);
        if (amount_in == 0) revert_error0(TOO_LARGE);
        u64 r0 = load_u64(0), r1 = load_u64(1);
        u64 r_in = dir ? r0 : r1, r_out = dir ? r1 : r0;
        if (r_in == 0 || r_out == 0) revert_error0(EMPTY_POOL);
        u64 out = (amount_in * 997 * r_out) / (r_in * 1000 + amount_in * 997);
        word out_w, min_out;
        word_from_u64(&out_w, out);
        copy(min_out.b, arg(input, 2), 32);
        if (word_lt(&out_w, &min_out)) revert_error2(SLIPPAGE, &out_w, &min_out);
        if (r_in + amount_in > MAX_RESERVE) revert_error0(TOO_LARGE);
        if (dir) { store_u64(0, r_in + amount_in); store_u64(1, r_out - out); }
        else { store_u64(1, r_in + amount_in); store_u64(0, r_out - out); }
        sender(&who);
        u8 topics[64], data[96];
        copy(topics, SWAP_TOPIC, 32);
        copy(topics + 32, who.b, 32);
        word_from_u64(&v, dir ? 1 : 0);
        copy(data, v.b, 32);
        copy(data + 32, arg(input, 1), 32);
        copy(data + 64, out_w.b, 32);
        keel_emit_log(topics, 2, data, 96);
        return_word(&out_w);
        return 0;
    }
    case 0x443cb4bc: /* reserve0() */
    case 0x5a76f25e: /* reserve1() */
    case 0x3a98ef39: /* totalShares() */
        require_no_value();
        word_from_u64(&slot, selector_of(input) == 0x443cb4bc ? 0 : selector_of(input) == 0x5a76f25e ? 1 : 3);
        load(&slot, &v);
        return_word(&v);
        return 0;
    case 0xce7c2ac2: { /* shares(address) */
        require_no_value();
        if (args < 1 || !valid_address(arg(input, 0))) revert_empty();
        word base;
        copy(who.b, arg(input, 0), 32);
        word_from_u64(&base, 2);
        mapping_slot(&slot, &who, &base);
        load(&slot, &v);
        return_word(&v);
        return 0;
    }
    default:
        revert_empty();
    }
}

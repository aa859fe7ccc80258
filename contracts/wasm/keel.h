/* keel's WASM host API for C contracts (docs/wasm-host-api.md), plus the small helpers an
 * ABI-compatible contract needs: 256-bit big-endian words, Solidity mapping slots, reverts.
 * Build: scripts/contracts (clang --target=wasm32, -nostdlib, no floats, 2 pages of memory). */
#ifndef KEEL_H
#define KEEL_H

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

#define KEEL_IMPORT(name) __attribute__((import_module("keel"), import_name(#name)))

KEEL_IMPORT(read_input) void keel_read_input(u8 *out);
KEEL_IMPORT(return_data) void keel_return_data(const u8 *ptr, u32 len);
KEEL_IMPORT(revert) __attribute__((noreturn)) void keel_revert(const u8 *ptr, u32 len);
KEEL_IMPORT(storage_load) void keel_storage_load(const u8 *key, u8 *out);
KEEL_IMPORT(storage_store) void keel_storage_store(const u8 *key, const u8 *value);
KEEL_IMPORT(caller) void keel_caller(u8 *out20);
KEEL_IMPORT(address) void keel_address(u8 *out20);
KEEL_IMPORT(call_value) void keel_call_value(u8 *out32);
KEEL_IMPORT(emit_log) void keel_emit_log(const u8 *topics, u32 topic_count, const u8 *data, u32 len);
KEEL_IMPORT(call) int keel_call(const u8 *to20, const u8 *value32, const u8 *input, u32 len, i64 gas);
KEEL_IMPORT(static_call) int keel_static_call(const u8 *to20, const u8 *input, u32 len, i64 gas);
KEEL_IMPORT(return_data_size) u32 keel_return_data_size(void);
KEEL_IMPORT(return_data_copy) void keel_return_data_copy(u8 *out, u32 offset, u32 len);
KEEL_IMPORT(keccak256) void keel_keccak256(const u8 *ptr, u32 len, u8 *out32);
KEEL_IMPORT(tx_session_key) int keel_tx_session_key(u8 *out32);
/* The session key's scope: 11 ABI words (out: 352 bytes), as Solidity's txSessionScope();
 * returns 1 if a session key signed the transaction, else 0 (docs/policies.md). */
KEEL_IMPORT(tx_session_scope) int keel_tx_session_scope(u8 *out352);
/* The live jurisdiction codes of this frame's caller, 2 bytes each, at most 8 (out: 16 bytes);
 * returns how many (docs/policies.md, "Jurisdiction rules"). */
KEEL_IMPORT(caller_tags) int keel_caller_tags(u8 *out16);

#define EXPORT(name) __attribute__((export_name(#name)))

/* -fno-builtin keeps clang from turning these loops back into calls to themselves. */
static void copy(u8 *dst, const u8 *src, u32 n) { for (u32 i = 0; i < n; i++) dst[i] = src[i]; }
static void zero(u8 *dst, u32 n) { for (u32 i = 0; i < n; i++) dst[i] = 0; }
static int is_zero(const u8 *p, u32 n) { for (u32 i = 0; i < n; i++) if (p[i]) return 0; return 1; }

/* 256-bit big-endian words. */
typedef struct { u8 b[32]; } word;

static int word_lt(const word *a, const word *b) {
    for (u32 i = 0; i < 32; i++) if (a->b[i] != b->b[i]) return a->b[i] < b->b[i];
    return 0;
}
/* a - b; the caller has checked b <= a. */
static void word_sub(word *out, const word *a, const word *b) {
    int borrow = 0;
    for (int i = 31; i >= 0; i--) {
        int d = (int)a->b[i] - (int)b->b[i] - borrow;
        borrow = d < 0;
        out->b[i] = (u8)(d + (borrow ? 256 : 0));
    }
}
/* a + b; returns 1 on overflow. */
static int word_add(word *out, const word *a, const word *b) {
    u32 carry = 0;
    for (int i = 31; i >= 0; i--) {
        u32 s = (u32)a->b[i] + (u32)b->b[i] + carry;
        out->b[i] = (u8)s;
        carry = s >> 8;
    }
    return carry != 0;
}
static void word_from_u64(word *w, u64 v) {
    zero(w->b, 32);
    for (int i = 31; i >= 24; i--) { w->b[i] = (u8)v; v >>= 8; }
}
static u64 word_low_u64(const word *w) {
    u64 v = 0;
    for (int i = 24; i < 32; i++) v = (v << 8) | w->b[i];
    return v;
}
static void word_from_address(word *w, const u8 *addr20) { zero(w->b, 12); copy(w->b + 12, addr20, 20); }

static u8 scratch[256];

/* Solidity's slot of mapping[key] at slot `base`: keccak(key ‖ base). */
static void mapping_slot(word *out, const word *key, const word *base) {
    copy(scratch, key->b, 32);
    copy(scratch + 32, base->b, 32);
    keel_keccak256(scratch, 64, out->b);
}

static void load(const word *slot, word *out) { keel_storage_load(slot->b, out->b); }
static void store(const word *slot, const word *value) { keel_storage_store(slot->b, value->b); }

/* Revert with no data (what solc does for bad calldata, value sent to a non-payable
 * function, or an unknown selector). */
__attribute__((noreturn)) static void revert_empty(void) { keel_revert(scratch, 0); }

/* Solidity `error Name(uint256 a, uint256 b)`. */
__attribute__((noreturn)) static void revert_error2(u32 selector, const word *a, const word *b) {
    scratch[0] = selector >> 24; scratch[1] = selector >> 16; scratch[2] = selector >> 8; scratch[3] = selector;
    copy(scratch + 4, a->b, 32);
    copy(scratch + 36, b->b, 32);
    keel_revert(scratch, 68);
}

/* Solidity `error Name()` and `error Name(uint256 a)`. */
__attribute__((noreturn, unused)) static void revert_error0(u32 selector) {
    scratch[0] = selector >> 24; scratch[1] = selector >> 16; scratch[2] = selector >> 8; scratch[3] = selector;
    keel_revert(scratch, 4);
}
__attribute__((noreturn, unused)) static void revert_error1(u32 selector, const word *a) {
    scratch[0] = selector >> 24; scratch[1] = selector >> 16; scratch[2] = selector >> 8; scratch[3] = selector;
    copy(scratch + 4, a->b, 32);
    keel_revert(scratch, 36);
}
/* Panic(uint256 code), as solc's checked arithmetic reverts. */
__attribute__((noreturn)) static void revert_panic(u64 code) {
    word c;
    word_from_u64(&c, code);
    scratch[0] = 0x4e; scratch[1] = 0x48; scratch[2] = 0x7b; scratch[3] = 0x71;
    copy(scratch + 4, c.b, 32);
    keel_revert(scratch, 36);
}

static u32 selector_of(const u8 *input) {
    return ((u32)input[0] << 24) | ((u32)input[1] << 16) | ((u32)input[2] << 8) | input[3];
}

/* ABI argument i as a word; 0 if it is not there (callers check the length first). */
static const u8 *arg(const u8 *input, u32 i) { return input + 4 + 32 * i; }

/* An ABI `address` argument must have its 12 high bytes clear (solc reverts otherwise). */
static int valid_address(const u8 *w) { return is_zero(w, 12); }

static void require_no_value(void) {
    word v;
    keel_call_value(v.b);
    if (!is_zero(v.b, 32)) revert_empty();
}

static void return_word(const word *w) { keel_return_data(w->b, 32); }
static void return_true(void) { word t; word_from_u64(&t, 1); return_word(&t); }

#endif

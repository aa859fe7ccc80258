/* Policy plugin (docs/policies.md): a stop-loss over a token balance. Once the account's
 * balance of the token has fallen below the floor the owner set, every further transfer, call
 * and deploy of the account is denied, until the owner lowers the floor or the balance is back
 * above it. (A plugin runs read-only before the transaction, so it judges the balance the
 * account has, not the one the transaction would leave.)
 *
 *   deploy(address token, uint256 floor)   the deployer is the owner
 *   setFloor(uint256)                       owner only
 *   floor() -> uint256
 *   check(…same context as allowlist.c…) -> uint256
 *       0 = allow, 1 = below the floor, 2 = the token's balanceOf failed
 *
 * Storage: owner at slot 0, token at slot 1, floor at slot 2. */
#include "keel.h"

#define MAX_INPUT 512
static u8 input[MAX_INPUT];

static int is_owner(void) {
    u8 a[20];
    word caller, owner, slot;
    keel_caller(a);
    word_from_address(&caller, a);
    word_from_u64(&slot, 0);
    load(&slot, &owner);
    return !word_lt(&caller, &owner) && !word_lt(&owner, &caller);
}

EXPORT(deploy) int deploy(u32 len) {
    require_no_value();
    if (len < 64 || len > MAX_INPUT) revert_empty();
    keel_read_input(input);
    if (!valid_address(input)) revert_empty();
    u8 a[20];
    word owner, token, floor, slot;
    keel_caller(a);
    word_from_address(&owner, a);
    word_from_u64(&slot, 0);
    store(&slot, &owner);
    copy(token.b, input, 32);
    word_from_u64(&slot, 1);
    store(&slot, &token);
    copy(floor.b, input + 32, 32);
    word_from_u64(&slot, 2);
    store(&slot, &floor);
    return 0;
}

EXPORT(call) int call(u32 len) {
    if (len < 4 || len > MAX_INPUT) revert_empty();
    keel_read_input(input);
    u32 args = (len - 4) / 32;
    word slot, v;
    switch (selector_of(input)) {
    case 0x8efbc0d8: /* setFloor(uint256) */
        require_no_value();
        if (args < 1 || !is_owner()) revert_empty();
        copy(v.b, arg(input, 0), 32);
        word_from_u64(&slot, 2);
        store(&slot, &v);
        keel_return_data(input, 0);
        return 0;
    case 0x40695363: /* floor() */
        word_from_u64(&slot, 2);
        load(&slot, &v);
        return_word(&v);
        return 0;
    case 0xd30425a3: { /* check(...) */
        if (args < 11) revert_empty();
        word token, floor, balance, code;
        word_from_u64(&slot, 1);
        load(&slot, &token);
        word_from_u64(&slot, 2);
        load(&slot, &floor);
        /* balanceOf(account) on the token, in whichever environment it runs. */
        u8 call_data[36];
        call_data[0] = 0x70; call_data[1] = 0xa0; call_data[2] = 0x82; call_data[3] = 0x31;
        copy(call_data + 4, arg(input, 1), 32);
        if (keel_static_call(token.b + 12, call_data, 36, 0) || keel_return_data_size() < 32) {
            word_from_u64(&code, 2);
        } else {
            keel_return_data_copy(balance.b, 0, 32);
            word_from_u64(&code, word_lt(&balance, &floor) ? 1 : 0);
        }
        return_word(&code);
        return 0;
    }
    default:
        revert_empty();
    }
}

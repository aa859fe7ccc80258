//! The integration tests of `runtime/` in one binary: each module below was its own test binary, and
//! each of those was compiled and linked on its own (issue 19, build time).

#[path = "churn.rs"]
mod churn;
#[path = "collision.rs"]
mod collision;
mod common;
#[path = "cross_env.rs"]
mod cross_env;
#[path = "determinism.rs"]
mod determinism;
#[path = "differential.rs"]
mod differential;
#[path = "expiry.rs"]
mod expiry;
#[path = "fold.rs"]
mod fold;
#[path = "hostile_wasm.rs"]
mod hostile_wasm;
#[path = "parallel.rs"]
mod parallel;
#[path = "policy.rs"]
mod policy;
#[path = "policy_spend.rs"]
mod policy_spend;
#[path = "sdk_testvm.rs"]
mod sdk_testvm;
#[path = "semantics.rs"]
mod semantics;
#[path = "token.rs"]
mod token;
#[path = "trace.rs"]
mod trace;
#[path = "validators.rs"]
mod validators;

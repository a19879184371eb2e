//! `$DDSSM_PLAIN_OPS` (`ddssm_train::PLAIN_OPS_VAR`): with it set, `start_process` turns the
//! fused CPU ops off for the whole process, so a GPU run's plain op path can be reproduced on
//! the CPU. The switch is process-wide, so this file holds a single test (its own process).

#[test]
fn the_variable_turns_the_fused_ops_off() {
    assert!(ddssm_tensor_ops::fused_ops(), "on by default");
    // Set before any other thread of this process reads the environment (one test here).
    std::env::set_var(ddssm_train::PLAIN_OPS_VAR, "1");
    ddssm_train::start_process().expect("start_process");
    assert!(!ddssm_tensor_ops::fused_ops());
}

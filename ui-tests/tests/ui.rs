//! Every misuse of `#[crudp::module]` is a compile error that points at the mistake and says how
//! to fix it; every allowed shape compiles and dispatches.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*/*.rs");
}

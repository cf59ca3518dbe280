#[crudp::module]
pub trait Todos {}

fn main() {}

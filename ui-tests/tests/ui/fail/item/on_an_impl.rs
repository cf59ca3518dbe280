pub trait Todos {}
pub struct Store;

#[crudp::module]
impl Todos for Store {}

fn main() {}

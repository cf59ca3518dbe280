#[crudp::module]
pub trait Todos {
    fn read(&self, ctx: &crudp::Context, id: u64) -> Result<String, ()>;
}

fn main() {}

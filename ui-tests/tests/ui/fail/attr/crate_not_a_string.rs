#[crudp::module(magic = 1, crate = ::crudp)]
pub trait Todos {
    async fn read(&self, ctx: &crudp::Context, id: u64) -> Result<String, ()>;
}

fn main() {}

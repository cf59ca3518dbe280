#[crudp::module]
pub trait Todos {
    async fn read(&self, ctx: &crudp::Context, id: u64) -> Result<String, ()>;
    async fn read(&self, ctx: &crudp::Context, name: String) -> Result<String, ()>;
}

fn main() {}

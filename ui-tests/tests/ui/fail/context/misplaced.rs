#[crudp::module]
pub trait Todos {
    async fn read(&self, id: u64, ctx: &crudp::Context) -> Result<String, ()>;
}

fn main() {}

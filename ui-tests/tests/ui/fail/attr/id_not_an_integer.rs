#[crudp::module(id = "seven")]
pub trait Todos {
    async fn read(&self, ctx: &crudp::Context, id: u64) -> Result<String, ()>;
}

fn main() {}

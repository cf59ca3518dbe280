#[crudp::module]
pub trait Todos {
    async fn read(&self, ctx: &mut crudp::Context, id: u64) -> Result<String, ()>;
}

fn main() {}

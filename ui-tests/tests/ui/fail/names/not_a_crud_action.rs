#[crudp::module]
pub trait Todos {
    async fn list(&self, ctx: &crudp::Context) -> Result<Vec<String>, ()>;
}

fn main() {}

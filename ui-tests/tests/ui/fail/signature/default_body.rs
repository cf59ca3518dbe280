#[crudp::module]
pub trait Todos {
    async fn read(&self, ctx: &crudp::Context, id: u64) -> Result<String, ()> {
        Ok(id.to_string())
    }
}

fn main() {}

#[crudp::module]
pub trait Todos {
    async fn read(&self, id: u64) -> Result<String, ()>;
}

fn main() {}

#[crudp::module]
pub struct Todos {
    pub title: String,
}

fn main() {}

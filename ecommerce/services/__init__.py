"""One FastAPI app per service. `ecommerce.services.registry` lists them all."""

"""One FastAPI app per service. `labkit.services.registry` lists them all."""

"""Operations tools for instructors and CI: manifest validation, doctor, the saga invariants,
chaos campaigns, the container image, and the client of the services' /faults endpoints."""

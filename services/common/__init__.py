"""Infrastructure shared by the Linli services. No domain logic lives here."""

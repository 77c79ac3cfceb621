"""Member service: party members, the development pipeline, transfers of organizational
relationship and check-ins, with personal data encrypted at rest and masked everywhere else."""

"""Organization service: units, party organizations, instructors and the two coverages."""

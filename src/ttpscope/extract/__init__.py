"""Threat report text -> Observations: documents, sentences, technique classifier, entities, IOCs, CVEs."""

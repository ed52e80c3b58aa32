"""Threat report text -> Observations: documents, sentences, technique classifier, entities, IOCs, CVEs.

    from ttpscope.kb import load_kb
    from ttpscope.extract import extract_file
    result = extract_file("report.pdf", load_kb("enterprise"))
    for t in result.techniques:
        print(t.id, t.name, t.confidence, t.evidence[0].sentence)
    case.add(result.observations)   # Observation(source_kind="text", source_ref="report.pdf#start-end")
"""

from ttpscope.extract.classifier import TechniqueClassifier, get_classifier, kb_training_set, train_custom
from ttpscope.extract.documents import Document, document_from_text, read_document
from ttpscope.extract.iocs import find_iocs
from ttpscope.extract.pipeline import Extraction, TechniqueFinding, extract_document, extract_file
from ttpscope.extract.sentences import Sentence, split_sentences

__all__ = [
    "Document", "Extraction", "Sentence", "TechniqueClassifier", "TechniqueFinding",
    "document_from_text", "extract_document", "extract_file", "find_iocs", "get_classifier", "kb_training_set",
    "read_document", "split_sentences", "train_custom",
]

"""The language-model task: corpora, the Shakespeare corpus builder, NT-ASGD, LM training."""

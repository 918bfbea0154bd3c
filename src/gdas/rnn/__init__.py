"""The recurrent search space: corpora, recurrent cells, language models, NT-ASGD."""

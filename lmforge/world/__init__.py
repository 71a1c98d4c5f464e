"""The built-in world: a small generated universe with a known truth.

  ontology.py   entities, attributes, and how facts are said and asked
  tasks.py      instruction tasks: generators and checkers
  corpus.py     the pretraining corpus, eight genres
  claims.py     finding (false) claims about entities in text
  oracle.py     the hidden true preference (evaluation and labelers only)
  responses.py  synthetic good and bad answers
  labelers.py   simulated labelers, calibrated to 73% agreement
  build.py      `lmforge world`: every split, in standard formats
"""

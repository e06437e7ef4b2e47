"""Data: tokenizer, text sources, packing, objectives (MLM, causal LM, span corruption), batching."""

"""Student training (`distill train`): the last stage of the pipe, corpus -> student.

``train.py`` reads top to bottom: corpus and base model in, transformers' Trainer (full
fine-tuning or LoRA, causal or seq2seq), a final model folder the teacher backends load
as-is. ``data.py`` turns pairs into the chat prompt the student will be served with.
"""

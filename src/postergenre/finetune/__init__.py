"""Fine-tuning an ImageNet CNN on labelled posters: the original study's own method.

``postergenre finetune LABELS --out DIR`` trains a backbone (mobilenet_v2 by default;
resnet18/34/50 where their weights are present) with a new multi-label genre head, under
the collection label weights and canonical input scale the stack uses
(:mod:`.train`). Its output (:mod:`.artifact`) is a safetensors file and a JSON record;
the ``cnn`` extractor embeds posters with it (config ``finetuned``: its sha256), and
``postergenre benchmark --finetuned`` scores its own head as a row
(:mod:`.benchmark_row`).

Importing this package is cheap: torch loads inside the functions that train or run the
network.
"""

"""End-to-end jobs behind the CLI: fine-tuning, the label-efficiency study, embeddings, search,
anomaly scores and the demo report. Each composes data, models, objectives, tasks, the training
loop and the evaluation layer; none defines a model or a metric of its own."""

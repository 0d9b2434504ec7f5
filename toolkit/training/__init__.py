"""The bundled trainers: `train_mer` (three experts, leave-one-subject-out) and `train_avvp`
(hybrid-attention parser from weak + migrated labels). Both read only the Parquet shards the
pipelines write, pack their inputs once into contiguous arrays, and resume from their last
checkpoint."""

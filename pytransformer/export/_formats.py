"""Constants the export command line needs before anything heavy is
imported (`pytransformer export --help` must not import NumPy)."""

# the weight types CTranslate2 accepts (ctranslate2.specs.model_spec.ACCEPTED_MODEL_TYPES)
QUANTIZATIONS = ("float32", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16",
                 "float16", "bfloat16")

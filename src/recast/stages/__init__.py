"""The stage layer: one thin function per DVC stage, which the `recast` CLI (hence dvc.yaml's
`cmd`s) and the Prefect tasks call, and nothing else does. Each reads its inputs, calls the
library, writes its outputs atomically (recast.io), writes metrics/<stage>.json and logs to
MLflow. The library below (data, models, generator, refiner, search, training, evaluation,
alignpro, promotion) returns values and never writes metrics/ or imports a stage.

    DVC stage          function                          module
    ingest             ingest                            stages.data
    pairs              build_pairs                       stages.data
    validate           validate                          stages.data
    split              split                             stages.data
    rewrites           rewrites                          stages.refiner
    warmstart          warmstart                         stages.refiner
    search             search                            stages.refiner
    train              train                             stages.refiner
    ablate@<variant>   ablate                            stages.refiner
    reward             reward                            stages.baselines
    bpo                bpo                               stages.baselines
    dpo                dpo                               stages.baselines
    evaluate           evaluate                          stages.evaluate
    report             report                            stages.evaluate
    main               main                              stages.main
    prompter           prompter                          stages.prompter
    prompter_sweep     sweep                             stages.prompter
    prompter_report    report                            stages.prompter
    promote            promote                           stages.promote
    promote_prompter   promote(kind="prompter")          stages.promote
"""

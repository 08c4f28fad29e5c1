"""Recipe stages. Importing this package registers every built-in stage in :data:`STAGES`."""

from moalign.stages.base import STAGES, StageContext, StageDef, StageResult, register_stage

__all__ = ["STAGES", "StageContext", "StageDef", "StageResult", "register_stage"]

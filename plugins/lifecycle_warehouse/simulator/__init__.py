"""Source simulator: a realistic, seeded company whose CRM, web analytics, ad platforms
and shop database feed the pipeline (docs/simulator.md).

    from lifecycle_warehouse.simulator import simulate, SimulationConfig
    result = simulate(SimulationConfig(days=60, customers=3000, seed=42))
    print(result.summary())
"""

from lifecycle_warehouse.simulator.config import DEFAULT_START, Rates, SimulationConfig, SimulationResult
from lifecycle_warehouse.simulator.simulation import simulate

__all__ = ["DEFAULT_START", "Rates", "SimulationConfig", "SimulationResult", "simulate"]

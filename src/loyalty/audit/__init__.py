"""The audit trail of configuration: who changed what in the programme, and when.

Every service that changes the configuration (programme settings, rewards,
earn rules, tiers, API keys, webhook endpoints, staff users) records one
``config_changes`` row in the transaction of the change, with the actor of
the work in progress (``loyalty.actors``).
"""

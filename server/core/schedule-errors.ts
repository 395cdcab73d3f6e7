/** Errors of the schedules service (ScheduleService), mapped to Connect codes in rpc/error-mapping.ts. */

/** NOT_FOUND: no schedule with this id in the caller's namespace. */
export class ScheduleNotFoundError extends Error {
  override readonly name = "ScheduleNotFoundError";
  constructor(readonly scheduleId: string, namespace: string) {
    super(`no schedule "${scheduleId}" in namespace ${namespace}`);
  }
}

/** ALREADY_EXISTS: CreateSchedule with a schedule_id that is taken (UpdateSchedule changes it). */
export class ScheduleExistsError extends Error {
  override readonly name = "ScheduleExistsError";
  constructor(readonly scheduleId: string, namespace: string) {
    super(`schedule "${scheduleId}" already exists in namespace ${namespace}; change it with UpdateSchedule or delete it first`);
  }
}

// An order moves through reserve → charge → ship. Each step runs once even if
// the server crashes between them; the payment step hands its idempotency key
// to the (pretend) payment provider so a retried charge is never doubled.
import { z } from "zod";
import type { WorkflowContext } from "@cairnjs/sdk/workflow";

export const WORKFLOW_NAME = "order_fulfillment";

export const Input = z.object({
  orderId: z.string().min(1),
  items: z.array(z.object({ sku: z.string().min(1), quantity: z.number().int().positive() })).min(1),
  amountCents: z.number().int().positive(),
});

export async function handler(input: z.infer<typeof Input>, ctx: WorkflowContext) {
  const reservation = await ctx.step("reserve-inventory", () => ({
    reservationId: `res_${input.orderId}`,
    units: input.items.reduce((sum, item) => sum + item.quantity, 0),
  }));

  const charge = await ctx.step("charge-payment", ({ idempotencyKey }) => {
    ctx.log.info("charging", { amountCents: input.amountCents });
    return { chargeId: `ch_${idempotencyKey.slice(0, 8)}`, amountCents: input.amountCents };
  });

  const shipment = await ctx.step("create-shipment", () => ({
    trackingNumber: `TRK-${input.orderId.toUpperCase()}`,
    carrier: reservation.units > 10 ? "freight" : "parcel",
  }));

  return { orderId: input.orderId, reservation, charge, shipment, status: "fulfilled" };
}

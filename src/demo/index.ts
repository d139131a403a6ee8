export * from './shop';
export { inventoryOperation, inventoryParticipant, type InventoryOperation } from './inventory';
export { paymentOperation, paymentParticipant, type PaymentOperation } from './payment';
export { shippingOperation, shippingParticipant, type ShippingOperation } from './shipping';
export { orderOperation, orderParticipant, type OrderOperation } from './order';
export { DemoTable } from './records';
